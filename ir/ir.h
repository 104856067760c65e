// ir.h: the graph IR: one node kind for every op, the op table (each op's
// kind, arity and attribute names, from ops.def), builders, the verifier,
// the text printer and parser, and the dot printer.
//
// A graph is a list of nodes in topological order (every input precedes its
// user). Shapes have the batch dimension as IR_N; pass_shapes() (or the
// lowering, node by node) fills them in. Every node keeps the .nn location
// it came from, so later stages can point at the user's source.
//
// The text form, one node a line (ir/print.c writes it, ir/parse.c reads it):
//
//   graph mlp "models/mlp.nn" {
//     %0 = input "image" : f32[N,28,28] @5:12
//     %1 = reshape %0 : f32[N,784] @8:20 scope "flatten_1"
//     %2 = param "linear_1.weight" init uniform(-0.0357, 0.0357) : f32[512,784] @8:31 scope "linear_1"
//     %3 = matmul %1, %2 {ta=0, tb=1} : f32[N,512] @8:31 scope "linear_1"
//     %9 = const {value=2.5} : f32[] @9:3
//     output %8
//     loss %11
//   }
//
// Operands follow the mnemonic; then the name string (leaves), the init
// (PARAM, BUFFER), the attributes in braces (every one the op declares, in
// ops.def order), the type, the location (omitted when line is 0) and the
// scope (omitted when NULL). Floats print so that they read back exactly.
// A model of several outputs has an `output %K "name"` line for each, in
// order; a single output named "output" prints without its name.
#ifndef NNC_IR_H
#define NNC_IR_H

#include "runtime.h"
#include "util.h"

#define IR_MAX_DIMS 6
#define IR_MAX_SRC 1024     // the most inputs of a node (a concat's)
#define IR_SRC_SLOTS 5      // src holds at least this many slots, NULL after the inputs
#define IR_MAX_IATTR 8
#define IR_MAX_FATTR 6
#define IR_N (-1)          // the batch dimension in a shape
#define IR_MAX_LOSS_TERMS 16   // losses in a weighted sum
#define IR_MAX_TARGETS 8       // targets of a model

typedef enum {
#define IR_OP(name, kind, min_in, max_in, mnem, iattrs, fattrs) IR_##name,
#include "ops.def"
#undef IR_OP
  IR_NUM_OPS
} IrOp;

// How an op is computed, and so which passes treat it alike; ops.def gives
// each op its kind and says what each one means.
typedef enum {
  IR_KIND_LEAF,
  IR_KIND_ELEMENTWISE,
  IR_KIND_MATMUL,
  IR_KIND_REDUCE,
  IR_KIND_VIEW,
  IR_KIND_INDEX,
  IR_KIND_LIB,
  IR_KIND_LOSS,
  IR_KIND_LOSS_GRAD,
  IR_KIND_UPDATE,
} IrOpKind;

typedef enum { DT_F32, DT_I32 } DType;

// How a PARAM or BUFFER is initialized (PyTorch's distributions).
typedef enum {
  INIT_ZEROS = RT_INIT_ZEROS,
  INIT_ONES = RT_INIT_ONES,
  INIT_CONSTANT = RT_INIT_CONSTANT,   // a
  INIT_NORMAL = RT_INIT_NORMAL,       // mean a, standard deviation b
  INIT_UNIFORM = RT_INIT_UNIFORM,     // from a to b
} InitKind;

typedef struct IrInit {
  InitKind kind;
  double a, b;
} IrInit;

// Per-op parameters; ops.def names each slot.
typedef struct IrAttr {
  int64_t i[IR_MAX_IATTR];
  double f[IR_MAX_FATTR];
} IrAttr;

typedef struct IrNode IrNode;
struct IrNode {
  IrOp op;
  DType dtype;
  int ndim;                    // number of dimensions; -1 while unknown (or after a shape error)
  int64_t shape[IR_MAX_DIMS];  // outermost first; IR_N for the batch dimension
  IrNode **src;                // inputs, in ir_src_slots(nsrc) slots; NULL after the last one
  int nsrc;                    // number of inputs
  IrAttr attr;                 // per-op parameters (see ops.def)
  const char *name;            // INPUT, TARGET, PARAM, BUFFER: the tensor's name
  IrInit init;                 // PARAM, BUFFER
  bool frozen;                 // BUFFER: a parameter kept as it is (`param ... frozen`, a layer's frozen = true)
  const char *scope;           // the layer this node belongs to ("down_1.conv2d_2"), or NULL
  SrcLoc loc;                  // where in the .nn file; every diagnostic uses it
  int id;                      // index in the graph's node list, printed as %id
};

typedef struct IrGraph {
  Arena *arena;                // owns the nodes and every string they point at
  const char *name;            // the model's name
  const char *file;            // the .nn file it came from (may be NULL)
  IrNode **nodes;              // topological order; nodes[i]->id == i
  int nnodes;
  int cap;
  IrNode *output;              // the model's (first) output: outputs[0]
  IrNode **outputs;            // [noutputs] the model's outputs, in the order its result lists them
  const char **output_names;   // [noutputs] each output's name ("output" for a single unnamed one)
  int noutputs;
  IrNode *loss;                // the loss, or NULL when the model has none: one loss op's result, or
                               // the weighted sum of several (add and mul by a const; ir_loss_terms)
} IrGraph;

// The op table (generated from ops.def).
typedef struct IrOpInfo {
  const char *mnem;            // "conv2d"
  IrOpKind kind;
  int min_in, max_in;          // number of inputs
  const char *iattr[IR_MAX_IATTR];  // names of attr.i slots; NULL after the last
  const char *fattr[IR_MAX_FATTR];  // names of attr.f slots; NULL after the last
  int niattr, nfattr;
} IrOpInfo;
const IrOpInfo *ir_op_info(IrOp op);
IrOp ir_op_lookup(const char *mnem);   // IR_NUM_OPS when unknown
IrOpKind ir_op_kind(IrOp op);          // ir_op_info(op)->kind
bool ir_op_is_leaf(IrOp op);           // kind LEAF: INPUT, TARGET, PARAM, BUFFER, CONST
bool ir_op_is_loss(IrOp op);           // kind LOSS

//
// ir/graph.c
//

IrGraph *ir_graph_new(Arena *a, const char *name);
// A deep copy of g in a (source locations still point at g's file); map
// (may be NULL, else g->nnodes entries) receives each node's copy by id.
IrGraph *ir_graph_clone(const IrGraph *g, Arena *a, IrNode **map);

// Appends a node of op with inputs src[0..nsrc) and returns it. Records the
// op only: shape (ndim -1), attributes and the rest are the caller's to set
// or pass_shapes()'s to infer.
IrNode *ir_add(IrGraph *g, IrOp op, IrNode **src, int nsrc, SrcLoc loc);
// The slots a node of nsrc inputs has in src: nsrc, and at least IR_SRC_SLOTS.
static inline int ir_src_slots(int nsrc) { return nsrc > IR_SRC_SLOTS ? nsrc : IR_SRC_SLOTS; }

// Builders for the common cases; each only records the op.
IrNode *ir_leaf(IrGraph *g, IrOp op, const char *name, DType dt, int ndim,
                const int64_t *shape, SrcLoc loc);
IrNode *ir_unary(IrGraph *g, IrOp op, IrNode *a, SrcLoc loc);
IrNode *ir_binary(IrGraph *g, IrOp op, IrNode *a, IrNode *b, SrcLoc loc);

// Appends n to g's outputs under name (g->output is the first one).
void ir_add_output(IrGraph *g, IrNode *n, const char *name);
// The loss ops whose weighted sum is g->loss, and their weights: g->loss
// itself (weight 1), or the terms of adds of them and of products of a
// const f32[] and them. Returns how many (at most max are stored); -1 when
// g->loss is anything else.
int ir_loss_terms(const IrGraph *g, IrNode **terms, double *weights, int max);
// The name of output n of g, or NULL when n is not an output.
const char *ir_output_name(const IrGraph *g, const IrNode *n);

// Number of elements in n, with batch as the size of IR_N; -1 if unknown.
int64_t ir_numel(const IrNode *n, int64_t batch);
bool ir_is_batched(const IrNode *n);   // has an IR_N dimension
bool ir_same_shape(const IrNode *a, const IrNode *b);
// Floating-point operations per sample for n (2 per multiply-add).
int64_t ir_flops(const IrNode *n);
// Writes "f32[N,28,28]" into buf (always NUL-terminated).
const char *ir_type_str(const IrNode *n, char *buf, size_t size);
const char *ir_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

//
// ir/verify.c
//

// Checks the graph's invariants: ids match positions, inputs precede their
// users, arities match ops.def, leaves have names, shapes are known. Reports
// each violation to d (a compiler bug, not the user's fault) and returns
// false if any.
bool ir_verify(const IrGraph *g, Diag *d);

//
// ir/print.c, ir/parse.c, ir/dot.c
//

void ir_print(FILE *out, const IrGraph *g);
void ir_print_node(FILE *out, const IrNode *n);
// v with the fewest digits that read back as exactly v ("0.1", "-nan").
void ir_print_float(FILE *out, double v);
// s as a C string literal.
void ir_print_str(FILE *out, const char *s);

// Reads a graph printed by ir_print. Errors go to d with the text's
// line:col; returns NULL if there were any.
IrGraph *ir_parse(const SrcFile *file, Arena *a, Diag *d);

// Writes a Graphviz digraph of g.
void ir_print_dot(FILE *out, const IrGraph *g);

//
// Kernel IR (ir/kernel.c): what fusion makes of a graph, and what the
// backends compile. A program is one entry point (forward, eval or train
// step): kernels in order over buffers at offsets the memory planner chose.
//
//   KN_LOOP  a loop nest over an index space (dimension 0 may be the batch);
//            a body of scalar instructions over loads with affine indexes,
//            and stores, which may reduce (sum) into their buffer
//   KN_GEMM  C = op(A) op(B) (beta 1: accumulate into C), then an optional
//            epilogue loop over C (bias, activation, residual)
//   KN_LIB   one graph node run by a library routine (convolution, pooling,
//            batchnorm, dropout, softmax and losses); a convolution may have
//            an epilogue loop over its result's rows, which the runtime runs
//            on each share of images once that share is computed
//

// Scalar instructions of a loop body.
typedef enum {
  KI_LOAD,      // buf, idx: a float
  KI_LOADI,     // buf, idx: an int32 (a class label), as a float
  KI_CONST,     // imm
  KI_INDEX,     // dim: the loop index of dimension dim, as a float
  KI_ADD, KI_SUB, KI_MUL, KI_DIV, KI_MAX, KI_MIN,              // a, b
  KI_NEG, KI_EXP, KI_LOG, KI_TANH, KI_SIGMOID, KI_SQRT, KI_ABS, KI_SIGN,   // a
  KI_GT,        // a > b ? 1 : 0
  KI_EQ,        // a == b ? 1 : 0
  KI_SELECT,    // a != 0 ? b : c
  KI_FMA,       // a * b + c, rounded once (as fmaf)
  KI_ERF,       // erf(a), one float formula on every backend (codegen/llvm.c emit_erf)
  KI_NUM_OPS
} KInstrOp;

// An affine index: offset + sum of stride[d] * i[d] over the loop
// dimensions, in elements. A stride of 0 broadcasts along that dimension.
typedef struct KIndex {
  int64_t offset;
  int64_t stride[IR_MAX_DIMS];
} KIndex;

typedef struct KInstr {
  KInstrOp op;
  int a, b, c;                 // operands: earlier instructions of the body
  int buf;                     // LOAD, LOADI: index into the kernel's bufs
  KIndex idx;                  // LOAD, LOADI
  int dim;                     // INDEX
  float imm;                   // CONST
} KInstr;

typedef enum {
  KR_NONE,      // store the value
  KR_SUM,       // add the value into the buffer, which the kernel zeroes first
  KR_MAX,       // keep the larger (a NaN wins), in the buffer the kernel fills with -inf first
} KReduce;

typedef struct KStore {
  int buf;                     // index into the kernel's bufs
  KIndex idx;
  int value;                   // the instruction whose value is stored
  KReduce reduce;
} KStore;

// The entry points a model compiles to (DESIGN.md, "The compiled step").
typedef enum {
  ENTRY_FORWARD = RT_ENTRY_FORWARD,   // the output, in inference mode (running statistics, no dropout)
  ENTRY_EVAL = RT_ENTRY_EVAL,         // the output and the loss, in inference mode
  ENTRY_TRAIN = RT_ENTRY_TRAIN,       // output, loss, gradients and the optimizer update, in training mode
  ENTRY_COUNT = RT_ENTRY_COUNT
} EntryKind;

// "forward", "eval_step", "train_step": the entry function's name.
const char *ir_entry_name(EntryKind e);
// Reads an entry point's name as the command line gives it: forward, eval
// or train (or the entry function's name); false for anything else.
bool ir_entry_parse(const char *s, EntryKind *e);

typedef enum { KN_LOOP, KN_GEMM, KN_LIB } KernelKind;

// A GEMM extent: coef, times the batch when batched.
typedef struct KExtent {
  int64_t coef;
  bool batched;
} KExtent;

typedef struct Kernel Kernel;
struct Kernel {
  KernelKind kind;
  const char *name;            // what it computes: "linear_1: matmul + add + relu"
  const IrNode **nodes;        // the graph nodes it computes, in order (their .nn lines)
  int nnodes;
  const IrNode **bufs;         // the buffers it touches: each a graph node's value
  int nbufs;
  // KN_LOOP
  int ndim;                    // dimensions of the index space
  int64_t dims[IR_MAX_DIMS];   // extents; IR_N for the batch (dimension 0 only)
  KInstr *body;
  int nbody;
  KStore *stores;
  int nstores;
  bool parallel;               // dimension 0 may be split across threads (no store reduces over it)
  // KN_GEMM: C[M, N] (+)= op(A) op(B) with A, B, C buffers 0, 1, 2
  bool ta, tb;
  KExtent m, n, k;
  bool accumulate;             // beta = 1
  Kernel *epilogue;            // a KN_LOOP over C (or a KN_LIB's result) run after it, or NULL
  // KN_LIB
  const IrNode *node;          // the node it runs
  RtLib *lib;                  // what the runtime runs: the kind, the buffers' places and shapes,
                               // the settings (filled once memory is planned)
};

// Where a buffer lives when the program runs.
typedef enum {
  KB_ARENA,     // the entry point's arena, at an offset the memory planner chose
  KB_STATE,     // persistent: parameters, buffers, optimizer state
  KB_INPUT,     // the caller's input or target
  KB_LOCAL,     // a value that lives only inside one batch-blocked region: each thread's block of
                // rows of it, in that thread's local rows (KRegion.local_bytes), at an offset
} KBufSpace;

typedef struct KBufInfo {
  KBufSpace space;
  int64_t offset;              // bytes from the start of its space, for the largest batch
  int64_t bytes;               // for the largest batch
} KBufInfo;

// The runtime's name for a space (RtLibBuf.space).
static inline int32_t ir_rt_space(KBufSpace s) {
  return s == KB_STATE ? RT_SPACE_STATE : s == KB_LOCAL ? RT_SPACE_LOCAL : RT_SPACE_ARENA;
}

enum { KP_PARAMS, KP_GRADS, KP_STATE1, KP_STATE2, KP_STATE3, KP_MAX_BLOCKS };

// A region (passes/region.c), kernels first..last, is one of two kinds.
// Batch-blocked: each kernel writes row n of its results from row n of
// what it reads (and from values with no batch dimension), so that the cpu
// backend may run them on blocks of rows, each block through every kernel
// in turn. Shared products: products whose C has no batch dimension (the
// weight gradients after a backward pass), none reading what another
// writes, except that several may add into one C in order; the cpu backend
// gives each thread one share of every C's rows (or columns) and runs the
// products one after another on it, with one wait at the end.
typedef struct KRegion {
  int first, last;             // kernel indexes, inclusive
  int64_t row_bytes;           // batch-blocked: the most bytes one of its kernels touches per sample
  bool products;               // shared products (row_bytes 0)
  int64_t block;               // batch-blocked: the most rows of a block (0: shared products); the
                               // memory planner lowers it where local rows would be too large
  int64_t local_bytes;         // batch-blocked: each thread's bytes for a block of the values that
                               // live only inside the region (KB_LOCAL); 0: none
} KRegion;

typedef struct KProgram {
  const IrGraph *g;
  EntryKind entry;
  Kernel **kernels;
  int nkernels;
  KBufInfo *buf;               // buf[node id]: where each node's value lives (bytes 0: not materialized);
                               // then buf[g->nnodes] for scalars and buf[g->nnodes + 1 + j] for blocks[j]
  const IrNode *scalars;       // train_step: the per-step scalars of the optimizer updates, an f32[8]
                               // in the arena (id g->nnodes, in no graph), which the runtime writes
                               // before each step (see KS_*); NULL without updates
  // train_step with one update over every parameter: the parameters, their
  // gradients and each kind of optimizer state as one flat block each
  // (ids g->nnodes + 1 + j, in no graph), laid out alike: a parameter's
  // gradient and state sit at its offset within the parameters' block.
  const IrNode *blocks[KP_MAX_BLOCKS];
  int nblocks;                 // 0: one update kernel per parameter
  int naux;                    // slots of run-time state its library kernels keep (RtLib.aux)
  KRegion *regions;            // in kernel order, disjoint
  int nregions;
  int64_t max_batch;           // the arena is sized for this batch
  int64_t arena_bytes;         // peak: the arena's size
  int64_t state_bytes;
  int64_t naive_bytes;         // what one buffer per node would take
} KProgram;


// Builders (ir/kernel.c): kernels are allocated from the graph's arena.
Kernel *ir_kernel_new(IrGraph *g, KernelKind kind, const char *name);
int ir_kernel_buf(IrGraph *g, Kernel *k, const IrNode *n);   // index of n in k->bufs, adding it
int ir_kernel_instr(IrGraph *g, Kernel *k, KInstr in);       // appends; returns its index
void ir_kernel_store(IrGraph *g, Kernel *k, KStore st);
void ir_kernel_add_node(IrGraph *g, Kernel *k, const IrNode *n);
void ir_kernel_add_new_node(IrGraph *g, Kernel *k, const IrNode *n);   // n is not in k yet
// The contiguous index of a node's elements over a loop space of the same
// shape (strides of its row-major layout), broadcast to ndim dimensions.
KIndex ir_kernel_index(const IrNode *n, int ndim, const int64_t *dims);

// Prints a program as kernel IR text (`nnc emit --stage kernels`; the
// grammar is in ir/kparse.c): the sizes, every buffer with its type and
// place, each kernel in full with the graph nodes and .nn lines it came
// from. ir_parse_program reads it back, and prints the same text again.
void ir_print_program(FILE *out, const KProgram *p);
// ir/verify.c: checks a finished program: every kernel computes nodes of
// its graph, every buffer it touches has a place of at least its bytes
// inside the arena or the state, its loads and stores name its buffers.
// False with the first violation in err (a compiler bug, not the user's).
bool ir_verify_program(const KProgram *p, char *err, size_t errsz);
// Reads a program printed by ir_print_program, in a fresh graph in a (its
// nodes are placeholders: id, name, type, .nn line; those the text does not
// name are NULL). Errors go to d with the text's line:col; NULL if any.
KProgram *ir_parse_program(const SrcFile *file, Arena *a, Diag *d);
const char *ir_kinstr_name(KInstrOp op);

#endif
