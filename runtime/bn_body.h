// bn_body.h: the loops of batch normalization, included by kernels_bn.c
// once for each instruction set it compiles them for: BN_NAME(f) is that
// set's f, BN_TARGET its target attribute (or nothing).
//
// Sums run in double, in 8 interleaved partial sums over a run (one
// vector of 8 doubles, or two of 4), combined pairwise.

BN_TARGET static double BN_NAME(run_sum)(const float *x, int64_t n) {
  double s[8] = {0}, t = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++)
      s[j] += x[i + j];
  for (; i < n; i++)
    t += x[i];
  return combine8(s) + t;
}

// sum (x - mu)^2 over a run.
BN_TARGET static double BN_NAME(run_sq)(const float *x, int64_t n, double mu) {
  double s[8] = {0}, t = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++)
      s[j] += (x[i + j] - mu) * (x[i + j] - mu);
  for (; i < n; i++)
    t += (x[i] - mu) * (x[i] - mu);
  return combine8(s) + t;
}

// sum dy and sum dy * (x - mu) * is over a run.
BN_TARGET static void BN_NAME(run_dy)(const float *dy, const float *x, int64_t n, double mu, double is, double *sdy,
                                      double *sdyx) {
  double s[8] = {0}, q[8] = {0}, t = 0, u = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) {
      s[j] += dy[i + j];
      q[j] += dy[i + j] * ((x[i + j] - mu) * is);
    }
  for (; i < n; i++) {
    t += dy[i];
    u += dy[i] * ((x[i] - mu) * is);
  }
  *sdy += combine8(s) + t;
  *sdyx += combine8(q) + u;
}

// y = (x - mu) * scale + shift over channel c, in floats.
BN_TARGET static void BN_NAME(bn_normalize)(float *y, const float *x, float mu, float scale, float shift, int64_t N,
                                            int64_t C, int64_t HW, int64_t c) {
  for (int64_t n = 0; n < N; n++) {
    float *yp = BN_AT(y, n, c);
    const float *xp = BN_AT(x, n, c);
    for (int64_t i = 0; i < HW; i++)
      yp[i] = (xp[i] - mu) * scale + shift;
  }
}

// Channels of short runs, a block at a time (kernels_bn.c, BnBlock).
BN_TARGET static void BN_NAME(bn_forward_short)(float *y, float *mean, float *invstd, float *running_mean,
                                                float *running_var, const float *x, const float *gamma,
                                                const float *beta, int64_t N, int64_t C, int64_t HW, float eps,
                                                float momentum, int64_t c0, int64_t c1) {
  int64_t cnt = N * HW, cb = BN_BLOCK / HW;
  BnBlock k;
  bn_block_init(&k, HW);
  double *v = k.pc[0], *w = k.pc[1], *o = k.pc[2];   // mean, scale, shift
  for (k.b0 = c0; k.b0 < c1; k.b0 += cb) {
    k.b1 = k.b0 + cb < c1 ? k.b0 + cb : c1;
    int64_t L = k.L = (k.b1 - k.b0) * HW;
    memset(k.s, 0, sizeof(double) * L);
    for (int64_t n = 0; n < N; n++) {
      const float *xb = BN_AT(x, n, k.b0);
      for (int64_t j = 0; j < L; j++)
        k.s[j] += xb[j];
    }
    for (int64_t c = k.b0; c < k.b1; c++)
      v[c - k.b0] = bn_channel(&k, k.s, c, HW) / cnt;   // the mean
    bn_expand(&k, k.dm, k.fm, v, HW);
    memset(k.t, 0, sizeof(double) * L);
    for (int64_t n = 0; n < N; n++) {
      const float *xb = BN_AT(x, n, k.b0);
      for (int64_t j = 0; j < L; j++)
        k.t[j] += (xb[j] - k.dm[j]) * (xb[j] - k.dm[j]);
    }
    for (int64_t c = k.b0; c < k.b1; c++) {
      double is = bn_stats(c, v[c - k.b0], bn_channel(&k, k.t, c, HW) / cnt, cnt, eps, momentum, mean, invstd,
                           running_mean, running_var);
      w[c - k.b0] = is * (gamma ? gamma[c] : 1.0);   // y = (x - mu) w + beta
      o[c - k.b0] = beta ? beta[c] : 0.0;
    }
    bn_expand(&k, NULL, k.fa, w, HW);
    bn_expand(&k, NULL, k.fb, o, HW);
    for (int64_t n = 0; n < N; n++) {
      const float *xb = BN_AT(x, n, k.b0);
      float *yb = BN_AT(y, n, k.b0);
      for (int64_t j = 0; j < L; j++)
        yb[j] = (xb[j] - k.fm[j]) * k.fa[j] + k.fb[j];
    }
  }
  bn_block_free(&k);
}

BN_TARGET static void BN_NAME(bn_backward_short)(float *dx, float *dgamma, float *dbeta, const float *dy,
                                                 const float *x, const float *mean, const float *invstd,
                                                 const float *gamma, int64_t N, int64_t C, int64_t HW, int64_t c0,
                                                 int64_t c1) {
  double cnt = (double)(N * HW);
  int64_t cb = BN_BLOCK / HW;
  BnBlock k;
  bn_block_init(&k, HW);
  double *m = k.pc[0], *is = k.pc[1], *a = k.pc[2], *b = k.pc[3], *d = k.pc[4];
  for (k.b0 = c0; k.b0 < c1; k.b0 += cb) {
    k.b1 = k.b0 + cb < c1 ? k.b0 + cb : c1;
    int64_t L = k.L = (k.b1 - k.b0) * HW;
    for (int64_t c = k.b0; c < k.b1; c++) {
      m[c - k.b0] = mean[c];
      is[c - k.b0] = invstd[c];
    }
    bn_expand(&k, k.dm, k.fm, m, HW);
    bn_expand(&k, k.di, k.fi, is, HW);
    memset(k.s, 0, sizeof(double) * L);
    memset(k.t, 0, sizeof(double) * L);
    for (int64_t n = 0; n < N; n++) {   // sum(dy), sum(dy xhat)
      const float *gb = BN_AT(dy, n, k.b0), *xb = BN_AT(x, n, k.b0);
      for (int64_t j = 0; j < L; j++) {
        k.s[j] += gb[j];
        k.t[j] += gb[j] * ((xb[j] - k.dm[j]) * k.di[j]);
      }
    }
    for (int64_t c = k.b0; c < k.b1; c++) {
      double sdy = bn_channel(&k, k.s, c, HW), sdyx = bn_channel(&k, k.t, c, HW);
      if (dbeta)
        dbeta[c] += (float)sdy;
      if (dgamma)
        dgamma[c] += (float)sdyx;
      double kc = (gamma ? gamma[c] : 1.0) * invstd[c] / cnt;   // as in k_batchnorm_backward_range
      a[c - k.b0] = kc * cnt;
      b[c - k.b0] = -kc * sdyx;
      d[c - k.b0] = -kc * sdy;
    }
    if (!dx)
      continue;
    bn_expand(&k, NULL, k.fa, a, HW);
    bn_expand(&k, NULL, k.fb, b, HW);
    bn_expand(&k, NULL, k.fc, d, HW);
    for (int64_t n = 0; n < N; n++) {
      const float *gb = BN_AT(dy, n, k.b0), *xb = BN_AT(x, n, k.b0);
      float *db = BN_AT(dx, n, k.b0);
      for (int64_t j = 0; j < L; j++)
        db[j] += k.fa[j] * gb[j] + k.fb[j] * ((xb[j] - k.fm[j]) * k.fi[j]) + k.fc[j];
    }
  }
  bn_block_free(&k);
}

// The training forward of channels [c0, c1) (k_batchnorm_forward_range).
BN_TARGET static void BN_NAME(forward)(float *y, float *mean, float *invstd, float *running_mean, float *running_var,
                                       const float *x, const float *gamma, const float *beta, int64_t N, int64_t C,
                                       int64_t HW, float eps, float momentum, int64_t c0, int64_t c1) {
  int64_t cnt = N * HW;
  if (HW < BN_SHORT_RUN) {
    BN_NAME(bn_forward_short)(y, mean, invstd, running_mean, running_var, x, gamma, beta, N, C, HW, eps, momentum, c0,
                              c1);
    return;
  }
  for (int64_t c = c0; c < c1; c++) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < N; n++)
      sum += BN_NAME(run_sum)(BN_AT(x, n, c), HW);
    double mu = sum / cnt;
    for (int64_t n = 0; n < N; n++)
      sq += BN_NAME(run_sq)(BN_AT(x, n, c), HW, mu);
    // the variance biased (it normalizes this batch)
    double is = bn_stats(c, mu, sq / cnt, cnt, eps, momentum, mean, invstd, running_mean, running_var);
    BN_NAME(bn_normalize)(y, x, (float)mu, (float)(is * (gamma ? gamma[c] : 1.0)), beta ? beta[c] : 0.0f, N, C, HW, c);
  }
}

// The inference forward (k_batchnorm_forward_eval_range).
BN_TARGET static void BN_NAME(forward_eval)(float *y, const float *x, const float *gamma, const float *beta,
                                            const float *running_mean, const float *running_var, int64_t N, int64_t C,
                                            int64_t HW, float eps, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; c++) {
    double mu = running_mean[c];
    double is = 1.0 / sqrt((double)running_var[c] + eps);
    BN_NAME(bn_normalize)(y, x, (float)mu, (float)(is * (gamma ? gamma[c] : 1.0)), beta ? beta[c] : 0.0f, N, C, HW, c);
  }
}

// The backward (k_batchnorm_backward_range).
BN_TARGET static void BN_NAME(backward)(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                        const float *mean, const float *invstd, const float *gamma, int64_t N,
                                        int64_t C, int64_t HW, int64_t c0, int64_t c1) {
  if (HW < BN_SHORT_RUN && HW > 0) {
    BN_NAME(bn_backward_short)(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, N, C, HW, c0, c1);
    return;
  }
  double cnt = (double)(N * HW);
  for (int64_t c = c0; c < c1; c++) {
    double mu = mean[c], is = invstd[c];
    double sdy = 0, sdyx = 0;   // sum(dy), sum(dy * xhat)
    for (int64_t n = 0; n < N; n++)
      BN_NAME(run_dy)(BN_AT(dy, n, c), BN_AT(x, n, c), HW, mu, is, &sdy, &sdyx);
    if (dbeta)
      dbeta[c] += (float)sdy;
    if (dgamma)
      dgamma[c] += (float)sdyx;
    if (dx) {   // dx += k (cnt dy - sum(dy) - xhat sum(dy xhat)), k = gamma invstd / cnt, in floats
      double k = (gamma ? gamma[c] : 1.0) * is / cnt;
      float a = (float)(k * cnt), b = (float)(-k * sdyx), d = (float)(-k * sdy), muf = (float)mu, isf = (float)is;
      for (int64_t n = 0; n < N; n++) {
        float *dxp = BN_AT(dx, n, c);
        const float *dyp = BN_AT(dy, n, c), *xp = BN_AT(x, n, c);
        for (int64_t i = 0; i < HW; i++)
          dxp[i] += a * dyp[i] + b * ((xp[i] - muf) * isf) + d;
      }
    }
  }
}
