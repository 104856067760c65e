// arena.c: a bump allocator. Allocations come from large blocks and are
// all freed together with the arena; single objects are never freed.
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct ArenaBlock {
  ArenaBlock *next;  // the older block
  size_t size;       // usable bytes in data
  _Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK 65536

Arena *arena_new(void) { return xcalloc(1, sizeof(Arena)); }

void arena_free(Arena *a) {
  if (!a)
    return;
  for (ArenaBlock *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  free(a);
}

void *arena_alloc(Arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!a->head || a->used + n > a->head->size) {
    size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    ArenaBlock *b = xmalloc(sizeof(ArenaBlock) + size);
    b->size = size;
    b->next = a->head;
    a->head = b;
    a->used = 0;
  }
  void *p = a->head->data + a->used;
  a->used += n;
  memset(p, 0, n);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, n + 1);
  vsnprintf(p, n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

void ptrvec_push(Arena *a, PtrVec *v, void *p) {
  if (v->len == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    void **data = arena_alloc(a, cap * sizeof(void *));
    if (v->len)
      memcpy(data, v->data, v->len * sizeof(void *));
    v->data = data;
    v->cap = cap;
  }
  v->data[v->len++] = p;
}

static uint32_t str_hash(const char *s) {   // FNV-1a
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

void *strmap_get(const StrMap *m, const char *key) {
  if (!m->cap)
    return NULL;
  for (uint32_t i = str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->keys[i])
      return NULL;
    if (!strcmp(m->keys[i], key))
      return m->vals[i];
  }
}

// Grows m to keep it at most half full (the old arrays stay in the arena).
void strmap_put(Arena *a, StrMap *m, const char *key, void *val) {
  if (2 * (m->count + 1) > m->cap) {
    StrMap old = *m;
    m->cap = old.cap ? 2 * old.cap : 16;
    m->count = 0;
    m->keys = arena_alloc(a, sizeof(char *) * m->cap);
    m->vals = arena_alloc(a, sizeof(void *) * m->cap);
    for (int i = 0; i < old.cap; i++)
      if (old.keys[i])
        strmap_put(a, m, old.keys[i], old.vals[i]);
  }
  uint32_t i = str_hash(key) & (m->cap - 1);
  while (m->keys[i])
    i = (i + 1) & (m->cap - 1);
  m->keys[i] = key;
  m->vals[i] = val;
  m->count++;
}
