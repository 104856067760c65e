// ir.h: the graph IR: one node kind for every op, the op table, builders,
// the verifier, the text printer and parser, and the dot printer.
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
#ifndef NNC_IR_H
#define NNC_IR_H

#include "util.h"

#define IR_MAX_DIMS 6
#define IR_MAX_SRC 5
#define IR_MAX_IATTR 8
#define IR_MAX_FATTR 6
#define IR_N (-1)          // the batch dimension in a shape

typedef enum {
#define IR_OP(name, min_in, max_in, mnem, iattrs, fattrs) IR_##name,
#include "ops.def"
#undef IR_OP
  IR_NUM_OPS
} IrOp;

typedef enum { DT_F32, DT_I32 } DType;

// How a PARAM or BUFFER is initialized (PyTorch's distributions).
typedef enum {
  INIT_ZEROS,
  INIT_ONES,
  INIT_CONSTANT,     // a
  INIT_NORMAL,       // mean a, standard deviation b
  INIT_UNIFORM,      // from a to b
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
  IrNode *src[IR_MAX_SRC];     // inputs; NULL after the last one
  int nsrc;                    // number of inputs
  IrAttr attr;                 // per-op parameters (see ops.def)
  const char *name;            // INPUT, TARGET, PARAM, BUFFER: the tensor's name
  IrInit init;                 // PARAM, BUFFER
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
  IrNode *output;              // the model's output (forward result)
  IrNode *loss;                // the loss, or NULL when the model has none
} IrGraph;

// The op table (generated from ops.def).
typedef struct IrOpInfo {
  const char *mnem;            // "conv2d"
  int min_in, max_in;          // number of inputs
  const char *iattr[IR_MAX_IATTR];  // names of attr.i slots; NULL after the last
  const char *fattr[IR_MAX_FATTR];  // names of attr.f slots; NULL after the last
  int niattr, nfattr;
} IrOpInfo;
const IrOpInfo *ir_op_info(IrOp op);
IrOp ir_op_lookup(const char *mnem);   // IR_NUM_OPS when unknown
bool ir_op_is_leaf(IrOp op);           // INPUT, TARGET, PARAM, BUFFER, CONST
bool ir_op_is_loss(IrOp op);
bool ir_op_is_elementwise(IrOp op);

//
// ir/graph.c
//

IrGraph *ir_graph_new(Arena *a, const char *name);

// Appends a node of op with inputs src[0..nsrc) and returns it. Records the
// op only: shape (ndim -1), attributes and the rest are the caller's to set
// or pass_shapes()'s to infer.
IrNode *ir_add(IrGraph *g, IrOp op, IrNode **src, int nsrc, SrcLoc loc);

// Builders for the common cases; each only records the op.
IrNode *ir_leaf(IrGraph *g, IrOp op, const char *name, DType dt, int ndim,
                const int64_t *shape, SrcLoc loc);
IrNode *ir_unary(IrGraph *g, IrOp op, IrNode *a, SrcLoc loc);
IrNode *ir_binary(IrGraph *g, IrOp op, IrNode *a, IrNode *b, SrcLoc loc);

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

// Reads a graph printed by ir_print. Errors go to d with the text's
// line:col; returns NULL if there were any.
IrGraph *ir_parse(const SrcFile *file, Arena *a, Diag *d);

// Writes a Graphviz digraph of g.
void ir_print_dot(FILE *out, const IrGraph *g);

#endif
