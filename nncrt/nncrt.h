/* nncrt.h: the nnc runtime library, which runs models compiled ahead of
 * time by `nnc compile`.
 *
 * A program that uses a compiled model includes the header nnc wrote for
 * it (MODEL.h) and calls the functions declared there, MODEL_create,
 * MODEL_forward, MODEL_train_step, ...; it links the object file (MODEL.o)
 * and this library:
 *
 *     cc app.c mlp.o $(pkg-config --cflags --libs nncrt)
 *
 * This header declares what the library offers beside that: its version,
 * and readers for the data such programs start from (IDX files as the
 * MNIST family ships them, PNG and PGM images). Including it is optional.
 *
 * The nncrt5_* functions further down are what a compiled model's own
 * functions call; a program does not call them itself. Their names carry
 * the library's ABI version, so an object file compiled for another
 * version of the library does not link against this one.
 *
 * Every function that can fail returns 0 on success and -1 on failure, with
 * a message of at most errsz bytes in err ("FILE: what is wrong", then a
 * "---> HINT: ..." line where the fix is not obvious).
 */
#ifndef NNCRT_H
#define NNCRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NNCRT_ABI 5

/* The version of nnc this library was built from ("0.1.0"). */
const char *nncrt_version(void);

/* Memory the readers below allocated. */
void nncrt_free(void *p);

/* Images and labels from IDX files (plain or gzip-compressed, told apart by
 * their first bytes), as nnc train reads them: *x gets n * dim floats (ubyte
 * pixels scaled to [0, 1]; other element types as stored), *y n int32
 * labels (labels may be NULL: then y is not touched). Free both with
 * nncrt_free. */
int nncrt_read_idx(const char *images, const char *labels, float **x, int32_t **y, int64_t *n, int64_t *dim,
                   char *err, size_t errsz);

/* A PNG or PGM image as a grayscale width x height sample in out (width *
 * height floats in [0, 1], row by row from the top), resized as nnc predict
 * resizes it: colour becomes gray by Rec. 601 luma, alpha is dropped. */
int nncrt_read_image(const char *path, int width, int height, float *out, char *err, size_t errsz);

/* What a compiled model's functions call (MODEL.h documents each). */
typedef struct nncrt_context nncrt_context;
nncrt_context *nncrt5_create(const void *model, int threads, char *err, size_t errsz);
void nncrt5_free(const void *model, nncrt_context *c);
void nncrt5_init(const void *model, nncrt_context *c, uint64_t seed);
int nncrt5_load(const void *model, nncrt_context *c, const char *path, char *err, size_t errsz);
int nncrt5_save(const void *model, nncrt_context *c, const char *path, char *err, size_t errsz);
int nncrt5_forward(const void *model, nncrt_context *c, int64_t batch, const float *x, float *out);
double nncrt5_eval(const void *model, nncrt_context *c, int64_t batch, const float *x, const void *y, float *out);
double nncrt5_train_step(const void *model, nncrt_context *c, int64_t batch, const float *x, const void *y,
                         double lr);
int nncrt5_output(const void *model, const nncrt_context *c, float *out);
int64_t nncrt5_steps(const void *model, const nncrt_context *c);
const char *nncrt5_error(const void *model, const nncrt_context *c);
int nncrt5_num_tensors(const void *model);
const char *nncrt5_tensor_name(const void *model, int i);
int64_t nncrt5_tensor_numel(const void *model, int i);
int nncrt5_read_tensor(const void *model, const nncrt_context *c, int i, float *out);
int nncrt5_write_tensor(const void *model, nncrt_context *c, int i, const float *in);

#ifdef __cplusplus
}
#endif

#endif
