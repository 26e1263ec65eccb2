/* gguf_internal.h — what the files of src/gguf share and nobody else sees. */
#ifndef SW_GGUF_INTERNAL_H
#define SW_GGUF_INTERNAL_H

#include "gguf.h"

/* Writes dir/model.json atomically from m (source_files: base names of the source parts). */
int sw__manifest_write(const char *dir, const struct sw_manifest *m, const char **source_files,
                       uint32_t n_source_files, char *err, size_t err_len);

#endif
