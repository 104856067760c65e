// load_model.h: what the C tests that run whole models share: a .nn file
// parsed, lowered and, when it has a loss, differentiated (NULL after
// reporting errors to stderr).
#ifndef NNC_TEST_LOAD_MODEL_H
#define NNC_TEST_LOAD_MODEL_H

#include "frontend.h"
#include "passes.h"

#include <string.h>

static inline Model *t_load_model(const char *path, Arena *a) {
  Diag d;
  diag_init(&d, stderr);
  Program *p = fe_parse_file(path, a, &d);
  Model *m = p && !d.nerrors ? pass_lower(p, a, &d) : NULL;
  if (m && m->g->loss && !pass_autodiff(m, &d))
    m = NULL;
  diag_free(&d);
  return m;
}

// Overwrites the slots of m's integer (i32) inputs in B rows of x (rows of
// the sum of the inputs' sizes) with int32 indexes drawn from r below the
// vocab of the embedding that reads each, and below at most (0: the vocab),
// so that tokens repeat.
static inline void t_fill_indexes(const Model *m, float *x, int64_t B, Rng *r, int64_t at_most) {
  int64_t row = 0, at = 0;
  for (int i = 0; i < m->ninputs; i++)
    row += ir_numel(m->inputs[i], 1);
  for (int i = 0; i < m->ninputs; i++) {
    const IrNode *in = m->inputs[i];
    int64_t d = ir_numel(in, 1), bound = pass_index_bound(m->g, in);
    if (at_most > 0 && bound > at_most)
      bound = at_most;
    for (int64_t b = 0; in->dtype == DT_I32 && bound > 0 && b < B; b++)
      for (int64_t j = 0; j < d; j++) {
        int32_t v = (int32_t)rng_below(r, (uint32_t)bound);
        memcpy(x + b * row + at + j, &v, sizeof v);
      }
    at += d;
  }
}

// Random targets for B samples in y: each sample's targets one after
// another (a row of exec_target_dim values), class indexes below each class
// target's count, other values uniform in [lo, lo + width).
static inline void t_fill_targets(const Model *m, void *y, int64_t B, Rng *r, double lo, double width) {
  for (int64_t i = 0, k = 0; i < B; i++)
    for (int t = 0; t < m->ntargets; t++)
      for (int64_t j = 0; j < ir_numel(m->targets[t], 1); j++, k++) {
        if (m->targets[t]->dtype == DT_I32)
          ((int32_t *)y)[k] = (int32_t)rng_below(r, (uint32_t)m->targets[t]->attr.i[0]);
        else
          ((float *)y)[k] = (float)(lo + width * rng_uniform(r));
      }
}

#endif
