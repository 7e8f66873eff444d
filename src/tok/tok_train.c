/* tok_train.c: placeholder, replaced below */
#include "tok/tok_internal.h"
void tok_train_opts_default(tok_train_opts *o) { memset(o, 0, sizeof *o); }
tok_tokenizer *tok_train_files(const char *const *files, size_t nfiles, const tok_train_opts *o, gk_err *err) { gk_errf(err, "todo"); return NULL; }
