/* kern.c: backend selection and memory for the CPU backends. */
#include "kern/kern.h"
#include "core/core.h"
#include <string.h>
#include <stdlib.h>

static kern_impl g_impl = KERN_IMPL_FAST;
void kern_set_impl(kern_impl impl) { g_impl = impl; }
kern_impl kern_get_impl(void) { return g_impl; }
const char *kern_impl_name(void) { return g_impl == KERN_IMPL_REF ? "cpu-ref" : "cpu-fast"; }

void *kern_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    GK_CHECK(posix_memalign(&p, 64, n ? n : 64) == 0, "out of memory allocating %zu bytes (try a smaller batch or model)", bytes);
    memset(p, 0, n);
    return p;
}
void kern_free(void *p) { free(p); }
void kern_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
void kern_upload(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void kern_download(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void kern_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
