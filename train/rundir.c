// rundir.c: the files of a training run: checkpoint, metrics log, lock.
//
// A run owns its files while it lasts: it locks the lock file (fcntl, so
// the lock dies with the process, even by kill -9), and a second run into
// the same place fails with the first one's pid. nnc never writes through a
// link: it refuses links at its paths, and every file it writes is a new
// temporary renamed into place (data_create_temp) or, for appends, opened with
// O_NOFOLLOW. Temporaries of dead processes are removed at the start. The
// metrics log is rewritten at the start to the epochs the checkpoint holds,
// so that it always agrees with the checkpoint: a row is appended only after
// its epoch's checkpoint is durable, and the checkpoint keeps its own row for
// when a crash came between the two.
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CSV_HEADER "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,seconds"   // then the terms' columns

// mkdir -p; a part of the path that is a file is an error.
static bool make_dirs(const char *path, char *err, size_t errsz) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    errorf(err, errsz, "the path '%s' is too long", path);
    return false;
  }
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p)
      continue;
    char c = *p;
    *p = 0;
    struct stat st;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
      errorf(err, errsz, "cannot create the directory '%s': %s\n---> HINT: %s", buf, strerror(errno),
                data_errno_hint(errno));
      return false;
    }
    if (stat(buf, &st) == 0 && !S_ISDIR(st.st_mode)) {
      errorf(err, errsz, "cannot create the directory '%s': a file of that name is in the way\n"
                "---> HINT: give --out a path whose parts are directories", buf);
      return false;
    }
    *p = c;
    if (!c)
      return true;
  }
}

static char *join(const char *a, const char *b) {
  StrBuf s = {0};
  sb_printf(&s, "%s%s", a, b);
  return s.data;
}


static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

// Works out the paths from --out: a directory, or the checkpoint itself.
static bool resolve(RunDir *d, const char *out, char *err, size_t errsz) {
  const char *ext = ".safetensors", *mext = d->json ? "jsonl" : "csv";
  size_t n = strlen(out), k = strlen(ext);
  struct stat st;
  bool exists = stat(out, &st) == 0;
  StrBuf s = {0};
  const char *ckpt = "checkpoint.safetensors";
  if (!strcmp(base_name(out), ckpt)) {   // DIR/checkpoint.safetensors is DIR's run: one lock for both spellings
    int len = (int)(n - strlen(ckpt)) - 1;   // without the slash
    sb_printf(&s, "%.*s", len > 0 ? len : 1, len >= 0 ? out : ".");
    char *dir = s.data;
    bool ok = resolve(d, dir, err, errsz);
    free(dir);
    return ok;
  }
  if (n > k && !strcmp(out + n - k, ext)) {
    if (exists && S_ISDIR(st.st_mode)) {
      errorf(err, errsz, "--out '%s' is a directory, but a path ending in .safetensors names the checkpoint "
                "file itself\n---> HINT: give the directory without .safetensors, or remove it", out);
      return false;
    }
    const char *slash = strrchr(out, '/');
    sb_printf(&s, "%.*s", slash ? (int)(slash == out ? 1 : slash - out) : 1, slash ? out : ".");
    d->dir = s.data;
    s = (StrBuf){0};
    d->ckpt = xstrdup(out);
    sb_printf(&s, "%.*s.metrics.%s", (int)(n - k), out, mext);
    d->metrics = s.data;
    s = (StrBuf){0};
    sb_printf(&s, "%.*s.lock", (int)(n - k), out);
    d->lock = s.data;
    return true;
  }
  if (exists && !S_ISDIR(st.st_mode)) {
    errorf(err, errsz, "--out '%s' is a file, not a directory\n---> HINT: give a directory for the run's files, "
              "or a path ending in .safetensors to name the checkpoint itself", out);
    return false;
  }
  d->dir = xstrdup(out);
  d->ckpt = join(out, "/checkpoint.safetensors");
  d->metrics = join(out, d->json ? "/metrics.jsonl" : "/metrics.csv");
  d->lock = join(out, "/train.lock");
  return true;
}

// A link planted at a path nnc writes would send its writes elsewhere.
static bool refuse_link(const char *path, char *err, size_t errsz) {
  struct stat st;
  if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode))
    return true;
  errorf(err, errsz, "'%s' is a symbolic link; nnc never writes through a link\n"
            "---> HINT: remove the link, or give another --out", path);
  return false;
}

// Locks the lock file for as long as the process lives and writes its pid
// there; a lock another process holds is an error naming that process.
static bool take_lock(RunDir *d, char *err, size_t errsz) {
  int fd = open(d->lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) {
    errorf(err, errsz, "cannot create the lock file '%s': %s\n---> HINT: %s", d->lock, strerror(errno),
              data_errno_hint(errno));
    return false;
  }
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int e = errno;
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    long pid = fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
    if (e == EAGAIN || e == EACCES)
      errorf(err, errsz, "%s is in use by another training (pid %ld), which holds its lock %s\n"
                "---> HINT: wait for that run to end or stop it, or give another --out", d->dir, pid, d->lock);
    else
      errorf(err, errsz, "cannot lock '%s': %s", d->lock, strerror(e));
    close(fd);
    return false;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
    errorf(err, errsz, "cannot write the lock file '%s': %s\n---> HINT: %s", d->lock, strerror(errno),
              data_errno_hint(errno));
    close(fd);
    return false;
  }
  d->lock_fd = fd;
  return true;
}

// The pid in a temporary's name "BASE.tmp.PID" or "BASE.tmp.PID.XXXXXX"
// for one of the bases; 0 when name is no such temporary.
static long temp_pid(const char *name, const char *const *bases, int nbases) {
  for (int i = 0; i < nbases; i++) {
    size_t k = strlen(bases[i]);
    if (strncmp(name, bases[i], k) || strncmp(name + k, ".tmp.", 5))
      continue;
    char *end;
    long pid = strtol(name + k + 5, &end, 10);
    if (pid > 0 && end != name + k + 5 && (*end == 0 || *end == '.'))
      return pid;
  }
  return 0;
}

// Removes the temporary files of this run's paths that processes no longer
// alive (killed while writing) left; we hold the lock, so no live nnc is
// writing them, and one with our own pid is from an earlier process too.
static void remove_stale(RunDir *d) {
  const char *bases[] = {base_name(d->ckpt), base_name(d->metrics)};
  DIR *dir = opendir(d->dir);
  if (!dir)
    return;
  for (struct dirent *e; (e = readdir(dir));) {
    long pid = temp_pid(e->d_name, bases, countof(bases));
    if (pid && (pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)))
      unlinkat(dirfd(dir), e->d_name, 0);   // best effort: a stale file left is only untidy
  }
  closedir(dir);
}

bool train_rundir_open(RunDir *d, const char *out, bool json, char *err, size_t errsz) {
  *d = (RunDir){.lock_fd = -1, .json = json};
  if (!resolve(d, out, err, errsz) || !make_dirs(d->dir, err, errsz) || !refuse_link(d->ckpt, err, errsz) ||
      !refuse_link(d->metrics, err, errsz) || !refuse_link(d->lock, err, errsz) || !take_lock(d, err, errsz))
    return false;
  remove_stale(d);
  return true;
}

//
// The metrics log
//

static void format_row(StrBuf *b, const RunDir *d, const Metrics *r) {
  char secs[32];
  if (d->json) {
    snprintf(secs, sizeof secs, r->seconds < 0 ? "null" : "%.3f", r->seconds);
    sb_printf(b, "{\"epoch\": %lld, \"step\": %lld, \"lr\": %.9g, \"train_loss\": %.9g, \"train_acc\": %.9g, "
              "\"val_loss\": %.9g, \"val_acc\": %.9g, \"seconds\": %s", (long long)r->epoch, (long long)r->step,
              r->lr, r->train_loss, r->train_acc, r->val_loss, r->val_acc, secs);
    for (int t = 0; t < d->nterms; t++)
      sb_printf(b, ", \"train_%s\": %.9g", d->terms[t], t < r->nterms ? r->train_terms[t] : -1);
    for (int t = 0; t < d->nterms; t++)
      sb_printf(b, ", \"val_%s\": %.9g", d->terms[t], t < r->nterms ? r->val_terms[t] : -1);
    sb_puts(b, "}\n");
  } else {
    snprintf(secs, sizeof secs, r->seconds < 0 ? "" : "%.3f", r->seconds);
    sb_printf(b, "%lld,%lld,%.9g,%.9g,%.9g,%.9g,%.9g,%s", (long long)r->epoch, (long long)r->step, r->lr,
              r->train_loss, r->train_acc, r->val_loss, r->val_acc, secs);
    for (int t = 0; t < d->nterms; t++)   // (a row restored without its terms: -1)
      sb_printf(b, ",%.9g", t < r->nterms ? r->train_terms[t] : -1);
    for (int t = 0; t < d->nterms; t++)
      sb_printf(b, ",%.9g", t < r->nterms ? r->val_terms[t] : -1);
    sb_putc(b, '\n');
  }
}

void train_rundir_terms(RunDir *d, const char *const *names, int n) {
  for (int t = 0; t < n && t < IR_MAX_LOSS_TERMS; t++)
    d->terms[t] = xstrdup(names[t]);
  d->nterms = n < IR_MAX_LOSS_TERMS ? n : IR_MAX_LOSS_TERMS;
}

// The epoch of a row of the log, or -1 for a line that is not one (the
// CSV header, a torn last line).
static int64_t row_epoch(const char *line, size_t len, bool json) {
  const char *key = "{\"epoch\": ";
  size_t k = json ? strlen(key) : 0;
  if (len == 0 || line[len - 1] != '\n' || (json && (len < k || strncmp(line, key, k))))
    return -1;
  char *end;
  long long e = strtoll(line + k, &end, 10);
  return end > line + k && *end == ',' && e > 0 ? e : -1;
}

// The log as it is (an empty buffer when there is none).
static bool read_log(const RunDir *d, StrBuf *b, char *err, size_t errsz) {
  int fd = open(d->metrics, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);   // a FIFO would block
  if (fd < 0 && errno == ENOENT)
    return true;
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    errorf(err, errsz, "cannot read the metrics log '%s': %s\n---> HINT: it must be a file nnc wrote",
              d->metrics, fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0)
      close(fd);
    return false;
  }
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; i++)
      sb_putc(b, buf[i]);
  int e = errno;
  close(fd);
  if (n < 0) {
    errorf(err, errsz, "cannot read the metrics log '%s': %s", d->metrics, strerror(e));
    return false;
  }
  return true;
}

// Writes text to path atomically: a new temporary, synced, renamed.
static bool replace_file(const char *path, const StrBuf *text, char *err, size_t errsz) {
  char *tmp;
  int fd = data_create_temp(path, &tmp);
  if (fd < 0) {
    errorf(err, errsz, "cannot write the metrics log '%s' (creating a temporary file beside it): %s\n"
              "---> HINT: %s", path, strerror(errno), data_errno_hint(errno));
    return false;
  }
  size_t done = 0;
  while (done < text->len) {
    ssize_t n = write(fd, text->data + done, text->len - done);
    if (n <= 0)
      break;
    done += (size_t)n;
  }
  int e = done < text->len ? (errno ? errno : EIO) : fsync(fd) != 0 ? errno : 0;
  if (close(fd) != 0 && !e)
    e = errno;
  if (!e && rename(tmp, path) != 0)
    e = errno;
  if (!e)
    e = data_sync_dir(path);
  if (e) {
    unlink(tmp);
    errorf(err, errsz, "cannot write the metrics log '%s': %s\n---> HINT: %s", path, strerror(e),
              data_errno_hint(e));
  }
  free(tmp);
  return !e;
}

bool train_rundir_start_metrics(RunDir *d, int64_t epoch, const Metrics *last, char *err, size_t errsz) {
  StrBuf old = {0}, text = {0};
  if (epoch > 0 && !read_log(d, &old, err, errsz))
    return false;
  if (!d->json) {   // the header, each term's columns after the others
    sb_puts(&text, CSV_HEADER);
    for (int t = 0; t < 2 * d->nterms; t++)
      sb_printf(&text, ",%s_%s", t < d->nterms ? "train" : "val", d->terms[t % d->nterms]);
    sb_putc(&text, '\n');
  }
  int64_t kept = 0;   // the epoch of the last row kept: rows only go forward
  for (size_t i = 0; i < old.len;) {
    const char *line = old.data + i, *nl = memchr(line, '\n', old.len - i);
    size_t len = nl ? (size_t)(nl - line) + 1 : old.len - i;
    int64_t e = row_epoch(line, len, d->json);
    if (e > kept && e <= epoch) {
      for (size_t j = 0; j < len; j++)
        sb_putc(&text, line[j]);
      kept = e;
    }
    i += len;
  }
  if (kept < epoch && last && last->epoch == epoch)
    format_row(&text, d, last);
  bool ok = replace_file(d->metrics, &text, err, errsz);
  sb_free(&old);
  sb_free(&text);
  if (!ok)
    return false;
  int fd = open(d->metrics, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || !(d->log = fdopen(fd, "a"))) {
    errorf(err, errsz, "cannot open the metrics log '%s': %s\n---> HINT: %s", d->metrics, strerror(errno),
              data_errno_hint(errno));
    if (fd >= 0)
      close(fd);
    return false;
  }
  return true;
}

bool train_rundir_log(RunDir *d, const Metrics *row, char *err, size_t errsz) {
  StrBuf b = {0};
  format_row(&b, d, row);
  errno = 0;
  bool ok = fwrite(b.data, 1, b.len, d->log) == b.len && fflush(d->log) == 0;
  int e = errno ? errno : EIO;
  sb_free(&b);
  if (!ok)
    errorf(err, errsz, "cannot write the metrics log '%s': %s; the checkpoint of epoch %lld was saved\n"
              "---> HINT: %s", d->metrics, strerror(e), (long long)row->epoch, data_errno_hint(e));
  return ok;
}

bool train_rundir_close(RunDir *d, char *err, size_t errsz) {
  bool ok = true;
  if (d->log && fclose(d->log) != 0) {
    errorf(err, errsz, "cannot write the metrics log '%s': %s\n---> HINT: %s", d->metrics, strerror(errno),
              data_errno_hint(errno));
    ok = false;
  }
  d->log = NULL;
  if (d->lock_fd >= 0 && close(d->lock_fd) != 0 && ok) {   // lets go of the lock; the file stays
    errorf(err, errsz, "cannot write the lock file '%s': %s", d->lock, strerror(errno));
    ok = false;
  }
  d->lock_fd = -1;
  for (int t = 0; t < d->nterms; t++)
    free(d->terms[t]);
  d->nterms = 0;
  free(d->dir);
  free(d->ckpt);
  free(d->metrics);
  free(d->lock);
  d->dir = d->ckpt = d->metrics = d->lock = NULL;
  return ok;
}
