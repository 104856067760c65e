// data.h: the runtime's data side: training data sets (IDX, IDX.gz, CSV),
// the validation split, shuffled batches, safetensors checkpoints and
// images for prediction.
//
// Every function that reads a file returns false on failure and writes a
// message into the caller's buffer (err, errsz): "FILE: what is wrong",
// followed by a "---> HINT: ..." line where the fix is not obvious. Callers
// print it as it is (nnc_fatal("%s", err)).
//
// Randomness comes from util's Rng (PCG32). Each use draws from its own
// stream (RT_STREAM_*), so that, say, the validation split does not change
// when shuffling is turned off.
#ifndef NNC_RT_DATA_H
#define NNC_RT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

// Rng streams of the runtime (the second argument of rng_seed).
#define RT_STREAM_SPLIT 0x73706c6974ULL   // "split": validation split
#define RT_STREAM_SHUFFLE 0x7368756666ULL // "shuff": batch order
#define RT_STREAM_AUGMENT 0x6175676dULL     // "augm": data augmentation

//
// runtime/data.c: data sets
//

#define RT_MAX_SAMPLE_DIMS 4
#define RT_MAX_CLASSES (1 << 24)   // the most classes a loader infers from the labels

// A data set in memory: n samples of dim floats each, with optional labels.
// Samples are floats (x), or, as ubyte IDX files store them, bytes (x8)
// that stand for x8 / 255: a quarter of the memory. Read samples through
// data_rows, which gives floats either way.
typedef struct Dataset {
  int64_t n;                           // number of samples
  int ndim;                            // dimensions of one sample (1..4)
  int64_t shape[RT_MAX_SAMPLE_DIMS];   // one sample's shape, outermost first (28, 28)
  int64_t dim;                         // floats per sample: the product of shape
  float *x;                            // [n, dim] features, or NULL when x8 holds them
  uint8_t *x8;                         // [n, dim] ubyte pixels for x8 / 255, or NULL
  int32_t *y;                          // [n] class labels, or NULL for unlabeled data
  float *t;                            // [n, tdim] real-valued targets, or NULL
  int64_t tdim;                        // floats per target (0 without t)
  int nclasses;                        // labels lie in [0, nclasses); 0 when unlabeled
  char *source;                        // the file(s) it came from, for messages
} Dataset;

void data_free(Dataset *ds);   // frees x, x8, y and source; ds itself is the caller's

// Samples idx[0..k) of ds (with idx NULL: samples first .. first + k) as
// floats, one after another in dst (k * dim floats).
void data_rows(const Dataset *ds, const int64_t *idx, int64_t first, int64_t k, float *dst);

// A copy of the samples idx[0..k) of ds, in that order.
void data_subset(const Dataset *ds, const int64_t *idx, int64_t k, Dataset *out);

// IDX element type codes (the third magic byte).
enum {
  RT_IDX_U8 = 0x08,
  RT_IDX_I8 = 0x09,
  RT_IDX_I16 = 0x0B,
  RT_IDX_I32 = 0x0C,
  RT_IDX_F32 = 0x0D,
  RT_IDX_F64 = 0x0E,
};
#define RT_IDX_MAX_DIMS 8
#define RT_IDX_MAX_BYTES ((int64_t)1 << 34)   // 16 GiB of element data at most

// One IDX file as it was stored: an array of one element type.
typedef struct IdxFile {
  int type;                            // RT_IDX_*
  int ndim;                            // 1..RT_IDX_MAX_DIMS
  int64_t dims[RT_IDX_MAX_DIMS];       // outermost first
  int64_t count;                       // elements: the product of dims
  void *data;                          // [count] elements in host byte order (xmalloc)
  bool gzip;                           // the file was gzip-compressed
} IdxFile;

// Reads an IDX file, plain or gzip (told apart by its first bytes, not its
// name). The file's size must match its header exactly. Concatenated gzip
// members are read as one stream; other bytes after the gzip data are an
// error.
bool data_idx_read(const char *path, IdxFile *out, char *err, size_t errsz);
// The same from bytes in memory (less than 4 GiB); name is used in messages.
bool data_idx_decode(const unsigned char *buf, size_t len, const char *name, IdxFile *out, char *err,
                   size_t errsz);
void data_idx_free(IdxFile *idx);

// Images from an IDX file (first dimension: samples) and, unless
// labels_path is NULL, labels from a one-dimensional integer IDX file.
// nclasses > 0: every label must lie in [0, nclasses); nclasses <= 0: the
// number of classes is the largest label plus one. ubyte images are scaled
// by 1/255; other element types are kept as they are.
bool data_load_idx(const char *images_path, const char *labels_path, int nclasses,
                 Dataset *out, char *err, size_t errsz);

// Where Debian's dataset-fashion-mnist package installs its files.
#define RT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

// The MNIST directory layout: split "train" reads train-images-idx3-ubyte
// and train-labels-idx1-ubyte, split "test" (or "t10k") the t10k-* files; each may also
// end in .gz or use a dot before idx (train-images.idx3-ubyte).
bool data_load_idx_dir(const char *dir, const char *split, int nclasses, Dataset *out,
                     char *err, size_t errsz);
// The images alone of a split of such a directory (no labels file needed),
// for a model whose loss compares its outputs with its inputs.
bool data_load_idx_dir_images(const char *dir, const char *split, Dataset *out, char *err, size_t errsz);

// A CSV with a header line: "label,pixel0,...,pixel783" (labeled) or
// "pixel0,...,pixel783" (unlabeled, y = NULL). Pixels lie in 0..255 and
// are scaled by 1/255; a square number of pixels gives a square sample
// shape. nclasses as for data_load_idx.
bool data_load_csv(const char *path, int nclasses, Dataset *out, char *err, size_t errsz);

// One group of columns of a table CSV: a model input, or the target.
typedef struct Columns {
  const char *name;                    // columns NAME (one value) or NAME0, NAME1, ... (several)
  int64_t dim;                         // values per sample (1 for a scalar)
  int nclasses;                        // a class target: one column of labels in [0, nclasses); else 0
  bool integer;                        // an integer input (i32): whole numbers, kept as int32 bits
  int64_t bound;                       // integer: each value in [0, bound) (0: any int32)
} Columns;

// A CSV table, header first: each column is named after one of the model's
// inputs or its target, the name alone for a single value per sample
// ("t,speed") or with its index for several ("x0,x1,x2,y0,y1"); columns
// may come in any order, others are skipped unread (they may hold text),
// and no name may appear twice.
// A sample's row is every input's values, one input after another in the
// order of inputs[] (dim: the sum of their dims). target NULL reads no
// target (unlabeled data, for prediction); a class target fills y, a
// real-valued one t. Values are kept as they are (no scaling); an integer
// input's are whole numbers stored as int32 in their float's 4 bytes
// (memcpy them out).
bool data_load_table_csv(const char *path, const Columns *inputs, int ninputs, const Columns *target,
                       Dataset *out, char *err, size_t errsz);

// The mean and standard deviation over every value of every sample.
void data_stats(const Dataset *ds, double *mean, double *std);

// x = (x - mean) / std for every value; std <= 0 counts as 1.
void data_normalize(Dataset *ds, double mean, double std);

// Splits ds into train and validation sets: val gets round(n * fraction)
// samples chosen by a permutation seeded with seed (stream RT_STREAM_SPLIT);
// both keep the samples in their original order. fraction lies in [0, 1].
bool data_split(const Dataset *ds, double fraction, uint64_t seed, Dataset *train,
              Dataset *val, char *err, size_t errsz);

//
// runtime/data.c: batching
//

// Where a batcher stands: enough to continue a run bit for bit.
typedef struct Cursor {
  int64_t epoch;                       // epochs finished
  int64_t pos;                         // samples of this epoch already handed out
  Rng rng;                             // the Rng before it drew this epoch's order
} Cursor;

// Hands out a data set in batches of a fixed size, in a fresh random
// order each epoch (or in file order without shuffle). The last batch of
// an epoch may be smaller; the epoch's end is a batch of size 0.
typedef struct Batcher {
  const Dataset *ds;                 // not owned
  int64_t batch;                       // B: samples per batch
  bool shuffle;                        // false: samples in their stored order
  Rng rng;                             // draws each epoch's permutation
  Rng epoch_rng;                       // rng as it was before this epoch's draw
  int64_t *perm;                       // [n] this epoch's order of sample indices
  int64_t epoch;                       // epochs finished
  int64_t pos;                         // samples of this epoch already handed out
  bool drop_last;                      // the epoch ends before a last batch smaller than B (PyTorch's
                                       // DataLoader(drop_last=True)); set after init
} Batcher;

// seed selects the order (stream RT_STREAM_SHUFFLE); the same seed always
// gives the same sequence of batches.
bool data_batcher_init(Batcher *b, const Dataset *ds, int64_t batch, bool shuffle,
                     uint64_t seed, char *err, size_t errsz);
void data_batcher_free(Batcher *b);

// Copies the next batch into x [B, dim] and y: [B] int32 labels, or
// [B, tdim] float targets for a data set with real-valued targets (y may
// be NULL; it is left alone for unlabeled data). Returns the batch's size;
// returns 0 once at the end of each epoch, and the call after that starts
// the next epoch.
int64_t data_batcher_next(Batcher *b, float *x, void *y);

int64_t data_batcher_nbatches(const Batcher *b);   // batches per epoch (the last may be partial
                                                    // unless drop_last)

Cursor data_batcher_cursor(const Batcher *b);
// Continues from c as if the batcher had run up to it.
bool data_batcher_set_cursor(Batcher *b, Cursor c, char *err, size_t errsz);

// A cursor as text for checkpoint metadata: "epoch=E pos=P rng=STATE:INC"
// (hexadecimal Rng words), and back.
void data_cursor_format(Cursor c, char *buf, size_t n);
bool data_cursor_parse(const char *s, Cursor *c);

//
// data/augment.c: data augmentation of training samples
//

// What to do to each training sample, in this order (the train
// declaration's settings): translate by up to crop pixels (PyTorch's
// RandomCrop(size, padding = crop)) and by up to shift, flip horizontally
// with probability 0.5, rotate by up to rotate degrees (bilinear), each
// filling with zeros; then add Gaussian noise of standard deviation noise.
typedef struct DataAugment {
  int shift;                           // pixels each way (0: none)
  int crop;                            // padding of the random crop (0: none)
  bool hflip;
  double rotate;                       // degrees, in [0, 180] (0: none)
  double noise;                        // standard deviation (0: none)
} DataAugment;

// Whether a moves pixels (anything but noise): it needs images [C, H, W].
bool data_augment_geometric(const DataAugment *a);
// The generator of sample `sample` (its place in the epoch's order) of
// epoch `epoch` of a run seeded with seed (stream RT_STREAM_AUGMENT).
void data_augment_seed(Rng *r, uint64_t seed, int64_t epoch, int64_t sample);
// a's geometric transforms on one image [C, H, W] in place (every channel
// moved alike), drawing from r; scratch holds C * H * W floats.
void data_augment_image(float *img, int64_t C, int64_t H, int64_t W, const DataAugment *a, Rng *r,
                        float *scratch);
// The transforms themselves, on images [C, H, W]: out[c, y, x] = img[c, y
// - dy, x - dx] (0 outside); img mirrored left to right in place; out =
// img turned counter-clockwise by deg degrees about its centre ((W - 1) / 2,
// (H - 1) / 2), as torchvision's rotate, sampled bilinearly (0 outside).
void data_image_translate(float *out, const float *img, int64_t C, int64_t H, int64_t W, int64_t dy, int64_t dx);
void data_image_flip(float *img, int64_t C, int64_t H, int64_t W);
void data_image_rotate(float *out, const float *img, int64_t C, int64_t H, int64_t W, double deg);
// x[i] += std * N(0, 1) for n values, drawing from r.
void data_augment_noise(float *x, int64_t n, double std, Rng *r);

//
// runtime/safetensors.c: checkpoints
//

typedef enum { ST_F32, ST_F64, ST_I32, ST_I64, ST_U8 } StDType;

#define RT_ST_MAX_DIMS 8
#define RT_ST_MAX_HEADER (100u * 1000 * 1000)   // larger headers are refused

const char *data_dtype_name(StDType t);   // "F32", ...
size_t data_dtype_size(StDType t);        // bytes per element

// One tensor of a safetensors file.
typedef struct StTensor {
  const char *name;                    // unique in the file; not "__metadata__"
  StDType dtype;
  int ndim;                            // 0 for a scalar
  int64_t shape[RT_ST_MAX_DIMS];       // outermost first
  const void *data;                    // [shape] little-endian elements, C order (NULL after
                                       // data_st_read_header)
  size_t nbytes;                       // set by the reader; the writer computes it
  uint64_t offset;                     // set by the reader: where the data lie in the file
} StTensor;

// One metadata entry: a string for a string.
typedef struct StMeta {
  const char *key;
  const char *value;
} StMeta;

// Writes the tensors and metadata to path atomically: to a new temporary
// file beside it (data_create_temp), synced, then renamed over path, and the
// directory synced. On failure path is left as it was and the temporary
// file is removed. A link at path is replaced, never followed.
bool data_st_write(const char *path, const StTensor *t, int nt, const StMeta *meta, int nmeta,
                 char *err, size_t errsz);

// Creates the file "path.tmp.PID.XXXXXX" (PID: this process's; X: random)
// with O_CREAT | O_EXCL, so never through a planted link, for writing
// what is then renamed over path. Returns its descriptor and its name in
// *tmp (the caller frees it), or -1 with errno set.
int data_create_temp(const char *path, char **tmp);
// Syncs the directory holding path, making a rename there durable; 0 or
// an errno (file systems that cannot sync a directory are not an error).
int data_sync_dir(const char *path);
// What to do about a failed write or open, for a ---> HINT line.
const char *data_errno_hint(int e);

// A safetensors file in memory.
typedef struct StFile {
  char *path;                          // the file it was read from
  unsigned char *buf;                  // the whole file; tensor data points into it
  size_t size;                         // the file's size: the bytes in buf (the header's
                                       // alone after data_st_read_header)
  StTensor *tensors;                   // [ntensors] in header order
  int ntensors;
  StMeta *meta;                        // [nmeta] entries of __metadata__
  int nmeta;
  Arena *arena;                        // names, strings, and copies of misaligned tensors
} StFile;

// Reads and checks a whole safetensors file.
bool data_st_read(const char *path, StFile *f, char *err, size_t errsz);
// The same, but the header alone: every check of the header is made (the
// data's offsets against the file's size too), and no tensor's data is
// read (data is NULL); data_st_read_tensor reads one into dst (nbytes),
// failing when the file is no longer the one whose header was read.
bool data_st_read_header(const char *path, StFile *f, char *err, size_t errsz);
bool data_st_read_tensor(const StFile *f, const StTensor *t, void *dst, char *err, size_t errsz);
void data_st_free(StFile *f);
const StTensor *data_st_find(const StFile *f, const char *name);   // NULL if absent
const char *data_st_meta(const StFile *f, const char *key);        // NULL if absent

//
// data/ckpt.c: nnc's checkpoints (train/checkpoint.c writes and reads them
// for an executor, the runtime library for an artifact)
//
// A checkpoint is a safetensors file of every persistent tensor under its
// structural name (conv2d_1.weight, conv2d_1.weight.momentum_buffer), with
// metadata: format DATA_CKPT_FORMAT, the model's hash, the epoch and step,
// and what a resume needs.

#define DATA_CKPT_FORMAT "nnc-checkpoint-1"

// A tensor a model keeps, as a checkpoint must hold it (f32).
typedef struct CkptTensor {
  const char *name;
  int ndim;
  const int64_t *shape;
} CkptTensor;

// Optimizer state: a name ending in .momentum_buffer, .exp_avg or .exp_avg_sq.
bool data_ckpt_optimizer_state(const char *name);
// FNV-1a over the names and shapes of the tensors that are not optimizer
// state: two models with the same hash store the same weights.
uint64_t data_ckpt_hash(const CkptTensor *t, int n);
// Whether path may be read as a checkpoint: a regular file (or missing,
// which the reader names); a directory or a FIFO gets a message.
bool data_ckpt_file(const char *path, char *err, size_t errsz);
// *plain: the file lacks nnc's format key (weights alone, as PyTorch's
// save_file writes them); false for another version of nnc's format.
bool data_ckpt_format(const StFile *f, bool *plain, char *err, size_t errsz);
// A metadata number from 0 to max; false names the key in err.
bool data_ckpt_meta_i64(const StFile *f, const char *key, int64_t max, int64_t *out, char *err, size_t errsz);
// The "normalize" metadata: *normalized, and the mean and std inputs were
// standardized with.
bool data_ckpt_normalize(const StFile *f, bool *normalized, double *mean, double *std, char *err, size_t errsz);
// Every tensor of want[n] is in f with its shape, as F32, and finite
// (optimizer state only unless weights_only; the finiteness of tensors
// whose data were not read, after data_st_read_header, is the caller's:
// data_ckpt_finite); f holds no tensor want lacks (PyTorch's
// num_batches_tracked aside, and optimizer state with weights_only).
// plain: the file has no nnc metadata (for the hint).
bool data_ckpt_check(const StFile *f, const CkptTensor *want, int n, bool weights_only, bool plain, char *err,
                     size_t errsz);
// Whether the n floats v of tensor name (of the checkpoint at path) are all
// finite; else a message naming the first that is not.
bool data_ckpt_finite(const char *path, const char *name, const void *v, int64_t n, char *err, size_t errsz);

//
// runtime/image.c: images for prediction
//

// A grayscale image with values in [0, 1].
typedef struct Image {
  int w;                               // width in pixels
  int h;                               // height in pixels
  float *px;                           // [h, w], row by row from the top
} Image;

// Reads a PGM (P2 or P5) or PNG file, told apart by their first bytes.
// Colour is turned into gray with the Rec. 601 luma weights; alpha is
// dropped.
bool data_image_load(const char *path, Image *img, char *err, size_t errsz);
// The same from bytes in memory; name is used in messages.
bool data_image_decode(const unsigned char *buf, size_t len, const char *name, Image *img,
                     char *err, size_t errsz);
void data_image_free(Image *img);
// Whether the file's first bytes are those of a PNG (even a damaged one) or
// a netpbm image (P1 to P7 and white space; a CSV header "P1,..." is not):
// then data_image_load's message is the one to show.
bool data_image_file(const char *path);

// Resamples src to w x h into dst: each axis is averaged over the source
// area a destination pixel covers when it shrinks, and interpolated
// linearly when it grows. Equal sizes copy. w and h are at least 1.
void data_image_resize(const Image *src, int w, int h, Image *dst);

#endif
