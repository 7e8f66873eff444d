/* emu.cc: the fiber scheduler behind emu.h (see there for the model and its limits). */
#include "emu.h"
#include <ucontext.h>
#include <stdio.h>
#include <vector>

namespace emu {

struct thread_state {
    ucontext_t ctx;
    uint3 tid;
    int lane, warp;
    int done;
    unsigned bar_gen;      /* block barrier generation this thread waits on */
    unsigned wbar_gen;     /* warp barrier generation */
};

thread_state *cur;
uint3 block_idx;
dim3 block_dim, grid_dim;

static ucontext_t g_sched;
static std::vector<thread_state> g_th;
static std::vector<char> g_stacks;
static const size_t STACK = 64 * 1024;
static const std::function<void()> *g_body;
static unsigned g_nthreads;
/* block barrier */
static unsigned g_bar_arrived, g_bar_gen;
/* warp barriers and exchange buffers */
static std::vector<unsigned> g_wbar_arrived, g_wbar_gen;
static std::vector<double> g_xchg;   /* [warp][32] */
static std::vector<unsigned> g_order;                /* the order threads are resumed in this round */
static unsigned long long g_rng_state = 20261207;

const uint3 &thread_idx() { return cur->tid; }

static void yield() { swapcontext(&cur->ctx, &g_sched); }

static void trampoline() {
    (*g_body)();
    cur->done = 1;
    swapcontext(&cur->ctx, &g_sched);
}

void syncthreads() {
    unsigned gen = g_bar_gen;
    if (++g_bar_arrived == g_nthreads) { g_bar_arrived = 0; g_bar_gen++; return; }
    while (g_bar_gen == gen) yield();
}

static void warp_barrier() {
    int w = cur->warp;
    unsigned gen = g_wbar_gen[w];
    if (++g_wbar_arrived[w] == 32) { g_wbar_arrived[w] = 0; g_wbar_gen[w]++; return; }
    while (g_wbar_gen[w] == gen) yield();
}

double shfl_xor_d(double v, int lane_mask) {
    if (g_nthreads % 32) { fprintf(stderr, "emu: a shuffle in a block of %u threads (not whole warps)\n", g_nthreads); abort(); }
    double *x = &g_xchg[(size_t)cur->warp * 32];
    x[cur->lane] = v;
    warp_barrier();                       /* every lane has written */
    double r = x[cur->lane ^ (lane_mask & 31)];
    warp_barrier();                       /* every lane has read: the buffer may be reused */
    return r;
}
float shfl_xor(float v, int lane_mask) { return (float)shfl_xor_d(v, lane_mask); }
float shfl_idx(float v, int src_lane) {
    double *x = &g_xchg[(size_t)cur->warp * 32];
    x[cur->lane] = v;
    warp_barrier();
    float r = (float)x[src_lane & 31];
    warp_barrier();
    return r;
}

void launch(dim3 grid, dim3 block, const std::function<void()> &body) {
    unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y, grid.z, block.x,
                block.y, block.z);
        abort();
    }
    grid_dim = grid;
    block_dim = block;
    g_body = &body;
    g_nthreads = n;
    g_th.resize(n);
    g_order.resize(n);
    for (unsigned i = 0; i < n; i++) g_order[i] = i;
    if (g_stacks.size() < n * STACK) g_stacks.resize(n * STACK);
    unsigned nw = (n + 31) / 32;
    g_wbar_arrived.assign(nw, 0);
    g_wbar_gen.assign(nw, 0);
    g_xchg.assign((size_t)nw * 32, 0.0);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                block_idx = uint3{bx, by, bz};
                g_bar_arrived = 0;
                for (unsigned i = 0; i < n; i++) {
                    thread_state &t = g_th[i];
                    t.tid = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
                    t.lane = (int)(i % 32);
                    t.warp = (int)(i / 32);
                    t.done = 0;
                    getcontext(&t.ctx);
                    t.ctx.uc_stack.ss_sp = &g_stacks[(size_t)i * STACK];
                    t.ctx.uc_stack.ss_size = STACK;
                    t.ctx.uc_link = NULL;
                    makecontext(&t.ctx, trampoline, 0);
                }
                unsigned live = n;
                while (live) {
                    unsigned progressed = 0;
                    /* each round resumes the threads in a fresh pseudo-random order, so a missing barrier (a
                     * thread reading what another has not written yet) shows up instead of being hidden by a
                     * fixed order; the sequence is fixed (seeded), so a failure replays */
                    for (unsigned k = n - 1; k > 0; k--) {
                        g_rng_state = g_rng_state * 6364136223846793005ull + 1442695040888963407ull;
                        unsigned j = (unsigned)((g_rng_state >> 33) % (k + 1));
                        unsigned tmp = g_order[k]; g_order[k] = g_order[j]; g_order[j] = tmp;
                    }
                    for (unsigned oi = 0; oi < n; oi++) {
                        unsigned i = g_order[oi];
                        if (g_th[i].done) continue;
                        cur = &g_th[i];
                        swapcontext(&g_sched, &cur->ctx);
                        if (cur->done) { live--; progressed++; }
                    }
                    /* a barrier some thread can never reach (it ended) would spin forever: detect it */
                    if (!progressed && live) {
                        unsigned waiting_block = g_bar_arrived;
                        if (waiting_block > 0 && waiting_block + (n - live) >= n) {
                            fprintf(stderr, "emu: __syncthreads deadlock in block (%u,%u): %u threads ended before it\n",
                                    bx, by, n - live);
                            abort();
                        }
                    }
                }
                cur = NULL;
            }
}

}  // namespace emu
