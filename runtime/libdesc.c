// libdesc.c: the names and sizes of library-kernel descriptors (RtLib),
// which the kernel IR's printer and parser use too: this file needs
// nothing but runtime.h.
#include "runtime.h"

const char *rt_lib_name(int kind) {
  static const char *const names[RL_COUNT] = {
      [RL_CONV2D] = "conv2d", [RL_CONV2D_GRAD_INPUT] = "conv2d_grad_input",
      [RL_CONV2D_GRAD_WEIGHT] = "conv2d_grad_weight", [RL_MAXPOOL] = "maxpool", [RL_MAXPOOL_GRAD] = "maxpool_grad",
      [RL_AVGPOOL] = "avgpool", [RL_AVGPOOL_GRAD] = "avgpool_grad", [RL_GLOBAL_AVGPOOL] = "global_avgpool",
      [RL_GLOBAL_AVGPOOL_GRAD] = "global_avgpool_grad", [RL_BATCHNORM] = "batchnorm",
      [RL_BATCHNORM_GRAD] = "batchnorm_grad", [RL_BATCHNORM_GRAD_GAMMA] = "batchnorm_grad_gamma",
      [RL_DROPOUT] = "dropout", [RL_DROPOUT_GRAD] = "dropout_grad", [RL_SOFTMAX] = "softmax",
      [RL_LOG_SOFTMAX] = "log_softmax", [RL_SOFTMAX_GRAD] = "softmax_grad", [RL_LOG_SOFTMAX_GRAD] = "log_softmax_grad",
      [RL_CROSS_ENTROPY] = "cross_entropy", [RL_NLL] = "nll", [RL_MSE] = "mse", [RL_L1] = "l1",
      [RL_BCE_WITH_LOGITS] = "bce_with_logits", [RL_CROSS_ENTROPY_GRAD] = "cross_entropy_grad",
      [RL_NLL_GRAD] = "nll_grad", [RL_MSE_GRAD] = "mse_grad", [RL_L1_GRAD] = "l1_grad",
      [RL_BCE_WITH_LOGITS_GRAD] = "bce_with_logits_grad", [RL_SGD_STEP] = "sgd_step", [RL_ADAM_STEP] = "adam_step",
      [RL_GAUSSIAN_NOISE] = "gaussian_noise",
      [RL_EMBEDDING] = "embedding", [RL_EMBEDDING_GRAD] = "embedding_grad",
      [RL_RMSPROP_STEP] = "rmsprop_step", [RL_ADAGRAD_STEP] = "adagrad_step",
      [RL_LAYERNORM] = "layernorm", [RL_LAYERNORM_GRAD] = "layernorm_grad",
      [RL_CONV2D_GRAD_WEIGHT_POOLED] = "conv2d_grad_weight_pooled",
      [RL_CONV2D_GRAD_INPUT_POOLED] = "conv2d_grad_input_pooled",
  };
  return kind >= 0 && kind < RL_COUNT ? names[kind] : NULL;
}

int64_t rt_lib_numel(const RtLibBuf *b, int64_t B) {
  int64_t n = 1;
  for (int i = 0; i < b->ndim; i++)
    n *= b->shape[i] == RT_BATCH ? B : b->shape[i];
  return n;
}

bool rt_lib_rowwise(const RtLib *k) {
  const RtLibBuf *r = &k->buf[k->nbufs - 1];
  if (k->nbufs < 2 || r->ndim < 2 || r->shape[0] != RT_BATCH || k->buf[0].shape[0] != RT_BATCH ||
      k->buf[0].ndim < 2)
    return false;
  switch (k->kind) {
  case RL_CONV2D:   // the weights and the bias have no batch dimension
    for (int b = 1; b < k->nbufs - 1; b++)
      if (k->buf[b].ndim >= 1 && k->buf[b].shape[0] == RT_BATCH)
        return false;
    return k->buf[0].ndim == 4 && r->ndim == 4;
  case RL_MAXPOOL:   // not where it keeps each window's argmax for a gradient
    return k->nbufs == 2 && k->aux < 0 && k->buf[0].ndim == 4 && r->ndim == 4;
  case RL_AVGPOOL: case RL_GLOBAL_AVGPOOL:
    return k->nbufs == 2 && k->buf[0].ndim == 4 && r->ndim == 4;
  default:
    break;
  }
  for (int b = 0; b < k->nbufs; b++)
    if (k->buf[b].ndim != r->ndim || k->buf[b].shape[0] != RT_BATCH)
      return false;
  switch (k->kind) {
  case RL_SOFTMAX: case RL_LOG_SOFTMAX: case RL_SOFTMAX_GRAD: case RL_LOG_SOFTMAX_GRAD:
    return k->i[0] >= 1 && k->i[0] < r->ndim;
  case RL_LAYERNORM: case RL_LAYERNORM_GRAD:
    return k->i[0] >= 1 && k->i[0] < r->ndim;
  default:
    return false;
  }
}
