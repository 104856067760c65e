// load_model.h: what the C tests that run whole models share: a .nn file
// parsed, lowered and, when it has a loss, differentiated (NULL after
// reporting errors to stderr).
#ifndef NNC_TEST_LOAD_MODEL_H
#define NNC_TEST_LOAD_MODEL_H

#include "frontend.h"
#include "passes.h"

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

#endif
