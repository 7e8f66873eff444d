# bench/build_flags.sh (sourced by bench/*/run.sh): CFLAGS and LIBS for building a benchmark straight from
# src/, with the Makefile's flags and its optional backends (OpenBLAS, oneDNN; NO_BLAS=1 / NO_DNNL=1 turn
# them off). A script adds the libraries its own sources need to LIBS.
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -fno-math-errno -Wall -Wextra -Wno-unused-parameter -Isrc -fopenmp"
LIBS="-lm -lpthread"
if [ -z "${NO_BLAS:-}" ] && pkg-config --exists openblas 2>/dev/null; then
  CFLAGS="$CFLAGS -DGK_HAVE_BLAS $(pkg-config --cflags openblas)"; LIBS="$LIBS $(pkg-config --libs openblas)"
fi
if [ -z "${NO_DNNL:-}" ] && [ -f /usr/include/dnnl.h ]; then
  CFLAGS="$CFLAGS -DGK_HAVE_DNNL"; LIBS="$LIBS -ldnnl"
fi
