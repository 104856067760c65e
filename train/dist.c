// dist.c: data-parallel training over MPI (`mpirun -np P nnc train
// --distributed`): the gradient sum between a step's backward pass and its
// updates, and the few collectives the training loop needs.
//
// The sum is fixed in order: each process's gradient is the mean over its
// share of the batch, and every process, from the gradients of all, forms
//   g = sum over q = 0 .. P-1, in that order, of (share_q / batch) * g_q
// so the result is the same bytes in every process and in every run,
// whatever the timing (MPI_Allreduce's order of additions is its own).
// Gradients go in buckets of about BUCKET_FLOATS floats, each sent to every
// other process (MPI_Isend, MPI_Irecv) as soon as the backward pass has
// made its last gradient, and waited for only before the first kernel that
// reads one: the rest of the backward pass runs while they travel. Between
// kernels MPI_Testall lets Open MPI move them.
//
// Built without MPI (no NNC_HAVE_MPI), train_dist_start says what to
// install, and nothing else here is reached.
#include "train.h"

#include <stdlib.h>
#include <string.h>

#ifdef NNC_HAVE_MPI
#include <mpi.h>

enum { BUCKET_FLOATS = 1 << 16 };   // 256 KiB: small enough to overlap, large enough to be cheap

// A run of gradients sent together.
typedef struct Bucket {
  float *send, *recv;    // [floats]: this process's; [size * floats]: every process's, by rank
  int64_t floats, cap;
  int first, count;      // its gradients: members[first .. first + count)
  MPI_Request *req;      // [2 * (size - 1)]: a receive from and a send to every other process
  bool posted, summed;
} Bucket;

// One gradient of the step, in the order they became ready.
typedef struct Member {
  int param;
  float *g;
  int64_t n, at;         // its floats, and where they lie in its bucket
  int bucket;
} Member;

struct Dist {
  int rank, size;
  double *weight;        // [size]: each process's share of this step's batch
  Bucket *buckets;       // this step's, in order (kept, with their buffers, for the next)
  int nbuckets, bucket_cap, open;   // open: the bucket gradients join, or -1
  Member *members;
  int nmembers, member_cap;
  int *bucket_of;        // [nparams]: by parameter, its member this step, or -1
  int nparams;
};

Dist *train_dist_start(char *err, size_t errsz) {
  int inited = 0, provided;
  MPI_Initialized(&inited);
  if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    errorf(err, errsz, "--distributed: MPI did not start\n---> HINT: start the processes with mpirun -np P "
           "nnc train ... --distributed");
    return NULL;
  }
  Dist *d = xcalloc(1, sizeof *d);
  MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &d->size);
  d->weight = xcalloc(d->size, sizeof(double));
  d->open = -1;
  return d;
}

void train_dist_end(Dist *d) {
  if (!d)
    return;
  for (int b = 0; b < d->bucket_cap; b++) {
    free(d->buckets[b].send);
    free(d->buckets[b].recv);
    free(d->buckets[b].req);
  }
  free(d->buckets);
  free(d->members);
  free(d->bucket_of);
  free(d->weight);
  free(d);
  int done = 0;
  MPI_Finalized(&done);
  if (!done)
    MPI_Finalize();
}

int train_dist_rank(const Dist *d) { return d->rank; }
int train_dist_size(const Dist *d) { return d->size; }

// This process's part of bucket k: where a bucket of one gradient lies,
// else the copy in send.
static const float *own(const Dist *d, const Bucket *k) {
  return k->count == 1 ? d->members[k->first].g : k->send;
}

// Sends bucket b to every other process and receives theirs into recv at
// their rank's place: point-to-point messages, which Open MPI moves faster
// than a nonblocking allgather, and tagged by the bucket (every process
// makes the same buckets in the same order).
static void post(Dist *d, int b) {
  Bucket *k = &d->buckets[b];
  for (int i = k->first; i < k->first + k->count && k->count > 1; i++)
    memcpy(k->send + d->members[i].at, d->members[i].g, sizeof(float) * d->members[i].n);
  int n = 0, tag = b % 32768;   // (MPI promises tags up to 32767)
  for (int q = 0; q < d->size; q++)
    if (q != d->rank)
      MPI_Irecv(k->recv + q * k->floats, (int)k->floats, MPI_FLOAT, q, tag, MPI_COMM_WORLD, &k->req[n++]);
  for (int q = 0; q < d->size; q++)
    if (q != d->rank)
      MPI_Isend(own(d, k), (int)k->floats, MPI_FLOAT, q, tag, MPI_COMM_WORLD, &k->req[n++]);
  k->posted = true;
  if (d->open == b)
    d->open = -1;
}

// Waits for bucket b and writes each of its gradients' sum over the
// processes over the gradient: w_0 g_0, then + w_q g_q for q = 1, 2, ... in
// that order, element by element (the same floats in every process).
static void finish(Dist *d, int b) {
  Bucket *k = &d->buckets[b];
  if (k->summed)
    return;
  if (!k->posted)
    post(d, b);
  MPI_Waitall(2 * (d->size - 1), k->req, MPI_STATUSES_IGNORE);
  enum { CHUNK = 1024 };   // summed a chunk at a time: this process's part may be the gradient itself
  float acc[CHUNK];
  for (int i = k->first; i < k->first + k->count; i++) {
    const Member *m = &d->members[i];
    for (int64_t lo = 0; lo < m->n; lo += CHUNK) {
      int64_t n = m->n - lo < CHUNK ? m->n - lo : CHUNK;
      for (int q = 0; q < d->size; q++) {
        float w = (float)d->weight[q];
        const float *r = (q == d->rank ? own(d, k) : k->recv + q * k->floats) + m->at + lo;
        if (q == 0)
          for (int64_t e = 0; e < n; e++)
            acc[e] = w * r[e];
        else
          for (int64_t e = 0; e < n; e++)
            acc[e] += w * r[e];
      }
      memcpy(m->g + lo, acc, sizeof(float) * n);
    }
  }
  k->summed = true;
}

static void on_ready(void *arg, int i, float *g, int64_t n) {
  Dist *d = arg;
  if (i >= d->nparams)
    nnc_bug(__FILE__, __LINE__, "a gradient of a parameter the executor did not have");
  if (d->open < 0) {   // a new bucket
    if (d->nbuckets == d->bucket_cap) {
      d->bucket_cap = d->bucket_cap ? 2 * d->bucket_cap : 8;
      d->buckets = xrealloc(d->buckets, sizeof(Bucket) * d->bucket_cap);
      memset(d->buckets + d->nbuckets, 0, sizeof(Bucket) * (d->bucket_cap - d->nbuckets));
    }
    Bucket *k = &d->buckets[d->open = d->nbuckets++];
    if (!k->req)
      k->req = xmalloc(sizeof(MPI_Request) * 2 * (d->size - 1));
    k->floats = 0;
    k->first = d->nmembers;
    k->count = 0;
    k->posted = k->summed = false;
  }
  Bucket *k = &d->buckets[d->open];
  if (k->floats + n > k->cap) {
    k->cap = k->floats + n > 2 * k->cap ? k->floats + n : 2 * k->cap;
    k->send = xrealloc(k->send, sizeof(float) * k->cap);
    k->recv = xrealloc(k->recv, sizeof(float) * k->cap * d->size);
  }
  if (d->nmembers == d->member_cap) {
    d->member_cap = d->member_cap ? 2 * d->member_cap : 16;
    d->members = xrealloc(d->members, sizeof(Member) * d->member_cap);
  }
  d->members[d->nmembers] = (Member){i, g, n, k->floats, d->open};
  d->bucket_of[i] = d->nmembers++;
  k->floats += n;
  k->count++;
}

static void on_need(void *arg, int i) {
  Dist *d = arg;
  if (i >= d->nparams || d->bucket_of[i] < 0)
    nnc_bug(__FILE__, __LINE__, "a gradient needed before it was ready");
  finish(d, d->members[d->bucket_of[i]].bucket);
}

// Between kernels: a full bucket goes; the posted ones progress.
static void on_between(void *arg) {
  Dist *d = arg;
  if (d->open >= 0 && d->buckets[d->open].floats >= BUCKET_FLOATS)
    post(d, d->open);
  for (int b = 0; b < d->nbuckets; b++) {
    Bucket *k = &d->buckets[b];
    int done = 0;
    if (k->posted && !k->summed)
      MPI_Testall(2 * (d->size - 1), k->req, &done, MPI_STATUSES_IGNORE);
  }
}

bool train_dist_attach(Dist *d, Exec *ex, const Model *m, char *err, size_t errsz) {
  ExecGradHook h = {on_ready, on_need, on_between, d};
  int n;
  if (d->size == 1)
    return true;   // a job of one: its gradients are the sum
  if (!exec_set_grad_hook(ex, &h, &n, err, errsz))
    return false;
  free(d->bucket_of);
  d->nparams = m->nparams;
  d->bucket_of = xmalloc(sizeof(int) * (m->nparams + 1));
  return true;
}

void train_dist_step(Dist *d, int64_t batch) {
  for (int q = 0; q < d->size; q++)
    d->weight[q] = (double)train_dist_share(batch, d->size, q + 1) - (double)train_dist_share(batch, d->size, q);
  for (int q = 0; q < d->size; q++)
    d->weight[q] /= (double)batch;
  d->nbuckets = d->nmembers = 0;
  d->open = -1;
  for (int i = 0; i < d->nparams; i++)
    d->bucket_of[i] = -1;
}

void train_dist_gather(Dist *d, const double *v, int n, double *all) {
  (void)d;
  MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
}

bool train_dist_all(Dist *d, bool ok) {
  (void)d;
  int in = ok, out = 0;
  MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return out != 0;
}

void train_dist_bcast(Dist *d, void *p, int64_t n) {
  (void)d;
  for (int64_t at = 0; at < n; at += 1 << 30) {
    int64_t k = n - at < (1 << 30) ? n - at : 1 << 30;
    MPI_Bcast((char *)p + at, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
  }
}

#else

struct Dist {
  int rank, size;
};

Dist *train_dist_start(char *err, size_t errsz) {
  errorf(err, errsz, "--distributed: this nnc was built without MPI\n---> HINT: install Open MPI "
         "(scripts/install-deps.sh does, or apt-get install libopenmpi-dev openmpi-bin), then configure and "
         "build nnc again: cmake finds it");
  return NULL;
}

void train_dist_end(Dist *d) { (void)d; }
int train_dist_rank(const Dist *d) { return d->rank; }
int train_dist_size(const Dist *d) { return d->size; }
bool train_dist_attach(Dist *d, Exec *ex, const Model *m, char *err, size_t errsz) {
  (void)d, (void)ex, (void)m, (void)err, (void)errsz;
  return false;
}
void train_dist_step(Dist *d, int64_t batch) { (void)d, (void)batch; }
void train_dist_gather(Dist *d, const double *v, int n, double *all) {
  (void)d;
  memcpy(all, v, sizeof(double) * n);
}
bool train_dist_all(Dist *d, bool ok) {
  (void)d;
  return ok;
}
void train_dist_bcast(Dist *d, void *p, int64_t n) { (void)d, (void)p, (void)n; }

#endif

int64_t train_dist_share(int64_t batch, int size, int q) { return batch * q / size; }
