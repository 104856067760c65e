// aot.h: compiling a model ahead of time (`nnc compile`): an object file
// (or a shared object) and a C header that a program links with the
// runtime library (nncrt/) to train and run the model without nnc.
//
// The object holds each entry point's program exactly as the cpu backend
// compiles it (pass_compile, then codegen), so an artifact computes the
// JIT's bytes; the model's description (RtModelInfo: tensors, offsets,
// optimizer settings) and, on request, its weights; and the model's API,
// every function named after the model (docs/aot.md).
#ifndef NNC_AOT_H
#define NNC_AOT_H

#include "train.h"

typedef struct AotOptions {
  const char *out;         // PREFIX: writes PREFIX.o (PREFIX.so with shared) and PREFIX.h
  const char *name;        // the API's prefix: a C identifier (NULL: the model's name)
  unsigned entries;        // bits 1 << ENTRY_*; 0: every entry point the model has
  int64_t max_batch;       // the largest batch the functions take
  const char *triple;      // NULL: the host
  const char *cpu;         // NULL: the host's CPU (or the target's generic one)
  const char *weights;     // a checkpoint to check against the model, or NULL
  bool embed;              // embed the weights: a context starts from them
  bool shared;             // link a shared object (with the runtime library inside)
  const char *runtime;     // shared: the runtime library to link (NULL: nnc's own)
  const char *source;      // the .nn file, for the header's comment
  const char *command;     // the command line, for the header's comment
} AotOptions;

// Compiles m (after pass_autodiff when the train entry is wanted) as o
// says and writes the files, each to a temporary name renamed into place
// only when all are complete; false with a message in err (nothing
// written then). Exit status for the caller: *usage set when the options
// were wrong (an unknown target or CPU, an entry point the model lacks).
bool aot_compile(const Model *m, const AotOptions *o, bool *usage, char *err, size_t errsz);

// Whether s can prefix the API's names: a C identifier, not a reserved one
// (leading underscore) nor the runtime library's (nncrt...), and short
// enough for every name.
bool aot_valid_name(const char *s);

#endif
