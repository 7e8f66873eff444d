# CLI tests for data-parallel training under Open MPI (src/dist, docs/distributed.md): 2 ranks against 1 for
# pretrain, SFT, RM and DPO (losses and final weights), ZeRO-1's optimizer state per rank, resume 2 -> 1 and
# 1 -> 2 ranks equal to the uninterrupted run, PPO statistics, a killed rank ending the job with a message
# naming it, Ctrl-C and SIGUSR1 saving once, and two "hosts" (network namespaces) talking TCP. Also GRPO and a
# LLaMA-family model, 3 ranks with uneven micro-batches.
# Tolerance 1e-5 (losses and weights; the issue's contract): 2 ranks add the same terms as 1 rank but in another
# order (each rank accumulates its own micro-batches, then the reduce-scatter adds the ranks' sums; split
# batches are rescaled by count_r / count), so float32 results differ in the last bits and drift a little
# through AdamW's m / sqrt(v); tiny models and a few steps keep that drift ~1e-6. In its first steps AdamW moves
# a weight by about lr * g / |g| whatever |g| is (while |g| >> eps), so a near-zero gradient component whose last
# bits differ can move by a fraction of lr: the DPO, PPO and GRPO runs (many such components) pin --eps 1e-6,
# which keeps the update linear in tiny gradients (measured: DPO 1.9e-5 under the -O1 sanitizer build with the
# default eps 1e-8, 2.7e-7 with 1e-6); pretraining, the issue's contract, keeps the default.
# Skips (loudly) when the build has no MPI or mpirun is missing. 2 ranks x 1 thread; a few seconds.
. "$(dirname "$0")/_lib.sh"
export OMP_NUM_THREADS=1
# Under the sanitizer build: Open MPI's runtime leaves allocations (some in components it has already unloaded,
# so no suppression can name them) that LeakSanitizer would report at every rank's exit. gptkit's own leaks are
# checked by the single-process tests of the same code; here only ASan's and UBSan's other checks stay on.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # CI runs as root; Open MPI refuses it otherwise
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
py() { python3 -c "$@"; }
cd "$TMP"
if ! command -v mpirun >/dev/null; then
  skip dist "mpirun not found (scripts/setup.sh installs openmpi-bin)"; exit 0
fi
if ! mpirun --oversubscribe -np 2 $GPTKIT dist-info 2>/dev/null | grep -q "ranks 2"; then
  skip dist "this gptkit was built without MPI (libopenmpi-dev) or mpirun cannot start 2 ranks here"; exit 0
fi
MPI="timeout 120 mpirun --oversubscribe -np 2"

cat > st.py <<'PYEOF'
import json, struct, sys
from array import array
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); d = b[8+n:]; out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; a = array('f'); a.frombytes(d[s:e]); out[k] = a
    return out
def maxdiff(a, b):
    A, B = load(a), load(b)
    if A.keys() != B.keys(): return float('inf')
    return max(max((abs(x - y) for x, y in zip(A[k], B[k])), default=0.0) for k in A)
def losses(p, key='loss'):
    return [json.loads(l)[key] for l in open(p) if '"%s"' % key in l and l.startswith('{')]
# same(a.jsonl, b.jsonl, dirA, dirB [, n]): equal step losses (n of them) and final weights within 1e-5
if __name__ == '__main__':
    a, b, da, db = sys.argv[1:5]
    la, lb = losses(a), losses(b)
    n = int(sys.argv[5]) if len(sys.argv) > 5 else len(la)
    dl = max((abs(x - y) for x, y in zip(la, lb)), default=float('inf'))
    dw = maxdiff(da + '/model.safetensors', db + '/model.safetensors')
    print('steps', len(la), len(lb), 'max loss diff', dl, 'max weight diff', dw)
    sys.exit(0 if len(la) == len(lb) == n and dl <= 1e-5 and dw <= 1e-5 else 1)
PYEOF
same() { python3 st.py "$@" > same.out 2>&1; local rc=$?; [ -n "$DIST_VERBOSE" ] && cat same.out >&2; return $rc; }

# data: the learnable recurrence of pretrain.sh's mixed-precision check (a shard of 97 tokens)
py "
import random
from array import array
rng=random.Random(3); n=6000; t=array('H',[0]*n); t[0],t[1]=5,11
for i in range(2,n): t[i]=(t[i-1]+t[i-2]%3+1+(rng.randrange(97) if rng.random()<0.1 else 0))%97
h=array('i',[0]*256); h[0],h[1],h[2]=20240520,1,n
open('d.bin','wb').write(h.tobytes()+t.tobytes())"

# 1. pretrain: 2 ranks x 2 micro-batches == 1 rank x 4 (--total-batch), losses and weights
PT="--model d2 --n-embd 32 --n-head 4 --vocab-size 97 --n-ctx 16 --seed 7 -b 2 -t 12 --total-batch 96 --lr 3e-3 --warmup 2 --steps 8 --data d.bin --json"
$GPTKIT pretrain $PT --out p1 > p1.jsonl 2>p1.err
$MPI $GPTKIT pretrain $PT --out p2 > p2.jsonl 2>p2.err
same p1.jsonl p2.jsonl p1 p2 8 && pass dist_pretrain_equal || fail dist_pretrain_equal "$(cat same.out p2.err | tail -5)"
# the contract's form: --init DIR --no-shuffle
$MPI $GPTKIT pretrain --init p1 --data d.bin --no-shuffle -b 2 -t 12 --total-batch 96 --steps 3 --lr 1e-3 --out q2 --json > q2.jsonl 2>q2.err
$GPTKIT pretrain --init p1 --data d.bin --no-shuffle -b 2 -t 12 --total-batch 96 --steps 3 --lr 1e-3 --out q1 --json > q1.jsonl 2>q1.err
same q1.jsonl q2.jsonl q1 q2 3 && pass dist_pretrain_init_no_shuffle || fail dist_pretrain_init_no_shuffle "$(cat same.out q2.err | tail -5)"
# 3 ranks, 5 micro-batches per step (ranks 0 and 1 take two, rank 2 one): still the same run; the held-out
# loss (its batches split across the ranks too) as well
PO="--model d2 --n-embd 32 --n-head 4 --vocab-size 97 --n-ctx 16 --seed 9 -b 2 -t 12 --total-batch 120 --lr 3e-3 --steps 4 --data d.bin --val d.bin --val-every 2 --val-batches 5 --json"
$GPTKIT pretrain $PO --out t1 > t1.jsonl 2>t1.err
timeout 120 mpirun --oversubscribe -np 3 $GPTKIT pretrain $PO --out t3 > t3.jsonl 2>t3.err
if same t1.jsonl t3.jsonl t1 t3 4 && grep -q "do not divide among 3 ranks" t3.err && py "
import sys; sys.path.insert(0,'.'); import st
a,b=st.losses('t1.jsonl','val_loss'),st.losses('t3.jsonl','val_loss')
sys.exit(0 if len(a)==len(b)==2 and max(abs(x-y) for x,y in zip(a,b))<=1e-6 else 1)"; then pass dist_three_ranks_uneven
else fail dist_three_ranks_uneven "$(cat same.out t3.err | tail -5)"; fi
# the LLaMA family (RMSNorm, RoPE, SwiGLU, grouped-query attention) through the same skeleton
PL="--arch llama --model d2 --n-embd 32 --n-head 4 --n-kv-head 2 --vocab-size 97 --n-ctx 16 --seed 3 -b 2 -t 12 --total-batch 96 --lr 3e-3 --steps 5 --data d.bin --json"
$GPTKIT pretrain $PL --out l1 > l1.jsonl 2>l1.err
$MPI $GPTKIT pretrain $PL --out l2 > l2.jsonl 2>l2.err
same l1.jsonl l2.jsonl l1 l2 5 && pass dist_llama_equal || fail dist_llama_equal "$(cat same.out l2.err | tail -5)"
# the reduce-scatter overlapped with the backward (--dist-bucket-mb, default 25 MB: one bucket for these tiny
# models): 0.01 MB buckets (12 of 29088 floats, started block by block during each rank's last backward of the
# step) and 0 (off: one blocking reduce-scatter after the backward) both give the 1-rank run's losses and weights,
# and comm_ms is still reported; 3 ranks over 2 micro-batches a step (rank 2 runs no backward: it starts all its
# buckets in the update, in the same order) too
$MPI $GPTKIT pretrain $PT --dist-bucket-mb 0.01 --out o2 > o2.jsonl 2>o2.err
$MPI $GPTKIT pretrain $PT --dist-bucket-mb 0 --out n2 > n2.jsonl 2>n2.err
if same p1.jsonl o2.jsonl p1 o2 8 && same p1.jsonl n2.jsonl p1 n2 8 && [ "$(grep -c '"comm_ms"' o2.jsonl)" = 8 ]; then
  pass dist_overlap_equal
else fail dist_overlap_equal "$(cat same.out o2.err n2.err | tail -5)"; fi
PU="--model d2 --n-embd 32 --n-head 4 --vocab-size 97 --n-ctx 16 --seed 11 -b 2 -t 12 --total-batch 48 --lr 3e-3 --steps 4 --data d.bin --json"
$GPTKIT pretrain $PU --out u1 > u1.jsonl 2>u1.err
timeout 120 mpirun --oversubscribe -np 3 $GPTKIT pretrain $PU --dist-bucket-mb 0.01 --out u3 > u3.jsonl 2>u3.err
same u1.jsonl u3.jsonl u1 u3 4 && pass dist_overlap_idle_rank || fail dist_overlap_idle_rank "$(cat same.out u3.err | tail -5)"
# rank 0 alone prints: one JSON line per step, not two
[ "$(grep -c '"loss"' p2.jsonl)" = 8 ] && pass dist_rank0_prints_once || fail dist_rank0_prints_once "$(grep -c loss p2.jsonl)"

# 2. ZeRO-1: each rank holds half the AdamW moments
if grep -q "ZeRO-1 optimizer state" p2.err && py "
import re,sys
m=re.search(r'state ([0-9.]+) MB per rank \(([0-9.]+) MB unsharded\)', open('p2.err').read())
a,b=float(m.group(1)),float(m.group(2)); sys.exit(0 if abs(a-b/2)<=0.011 else 1)"; then pass dist_zero1_half_moments
else fail dist_zero1_half_moments "$(cat p2.err)"; fi

# 3. resume across rank counts: 2 -> 1 and 1 -> 2 equal the uninterrupted run (shuffled data, accumulation)
PR="--model d2 --n-embd 32 --n-head 4 --vocab-size 97 --n-ctx 16 --seed 5 -b 2 -t 12 --total-batch 96 --lr 3e-3 --warmup 2 --steps 8 --data d.bin --json"
$GPTKIT pretrain $PR --out full > full.jsonl 2>/dev/null
$MPI $GPTKIT pretrain $PR --stop-at 4 --out r21 > r21a.jsonl 2>/dev/null
$GPTKIT pretrain --resume r21 --json > r21b.jsonl 2>r21.err
cat r21a.jsonl r21b.jsonl > r21.jsonl
same full.jsonl r21.jsonl full r21 8 && pass dist_resume_2_to_1 || fail dist_resume_2_to_1 "$(cat same.out r21.err | tail -5)"
$GPTKIT pretrain $PR --stop-at 4 --out r12 > r12a.jsonl 2>/dev/null
$MPI $GPTKIT pretrain --resume r12 --json > r12b.jsonl 2>r12.err
cat r12a.jsonl r12b.jsonl > r12.jsonl
same full.jsonl r12.jsonl full r12 8 && pass dist_resume_1_to_2 || fail dist_resume_1_to_2 "$(cat same.out r12.err | tail -5)"
# the optimizer moments saved by 2 ranks are the whole ones, in today's format
py "
import sys; sys.path.insert(0,'.'); import st
sys.exit(0 if st.maxdiff('full/train_state.safetensors','r12/train_state.safetensors') <= 1e-5 else 1)" \
  && pass dist_moments_gathered || fail dist_moments_gathered

# 4. SFT, RM and DPO: the batch split across ranks (losses and weights equal)
py "
import json
things=['cat','dog','tree','house','river','book','song','car','bird','fish','apple','city']
order=['good','fine','old','bad']
with open('corpus.txt','w') as f:
    for t in things:
        for a in order: f.write(f'Tell me about the {t}. The {t} is {a}.\n')
with open('sft.jsonl','w') as f:
    for t in things:
        for a in order: f.write(json.dumps({'messages':[{'role':'user','content':f'Tell me about the {t}.'},{'role':'assistant','content':f'The {t} is {a}.'}]})+'\n')
with open('prefs.jsonl','w') as f:
    for i,t in enumerate(things*2):
        if i%3==2: f.write(json.dumps({'prompt':f'Tell me about the {t}.','ranked':[f'The {t} is {a}.' for a in order]})+'\n')
        else:
            a,b=sorted([i%4,(i+1+i//4)%4]) if i%4!=(i+1+i//4)%4 else (0,3)
            f.write(json.dumps({'prompt':f'Tell me about the {t}.','chosen':f'The {t} is {order[a]}.','rejected':f'The {t} is {order[b]}.'})+'\n')
"
$GPTKIT tokenizer train --input corpus.txt --vocab-size 300 --out tok >/dev/null 2>&1 \
  && $GPTKIT tokenize --tokenizer tok --input corpus.txt --out-dir shards --val-fraction 0 >/dev/null 2>&1 \
  && $GPTKIT pretrain --model d2 --n-embd 32 --n-head 4 --vocab-size 300 --n-ctx 32 --data "shards/train_*.bin" \
       --tokenizer tok -b 4 -t 16 --steps 30 --lr 3e-3 --out base --json >/dev/null 2>base.err || fail dist_base "$(cat base.err)"
SF="--init base --data sft.jsonl -b 5 --steps 6 --lr 3e-3 --warmup 2 --seed 3 --json"
$GPTKIT sft $SF --out s1 > s1.jsonl 2>s1.err
$MPI $GPTKIT sft $SF --out s2 > s2.jsonl 2>s2.err
same s1.jsonl s2.jsonl s1 s2 6 && pass dist_sft_equal || fail dist_sft_equal "$(cat same.out s2.err | tail -5)"
RM="--init base --data prefs.jsonl -b 5 --steps 5 --lr 1e-3 --warmup 2 --seed 3 --json"
$GPTKIT rm $RM --out m1 > m1.jsonl 2>m1.err
$MPI $GPTKIT rm $RM --out m2 > m2.jsonl 2>m2.err
if same m1.jsonl m2.jsonl m1 m2 5 && py "
import sys; sys.path.insert(0,'.'); import st
a,b=st.losses('m1.jsonl','accuracy'),st.losses('m2.jsonl','accuracy'); print(a,b); sys.exit(0 if a==b else 1)" >>same.out; then
  pass dist_rm_equal; else fail dist_rm_equal "$(cat same.out m2.err | tail -5)"; fi
DP="--policy base --data prefs.jsonl -b 5 --steps 4 --beta 0.1 --lr 5e-4 --warmup 2 --seed 3 --eps 1e-6 --json"
$GPTKIT dpo $DP --out o1 > o1.jsonl 2>o1.err
$MPI $GPTKIT dpo $DP --out o2 > o2.jsonl 2>o2.err
same o1.jsonl o2.jsonl o1 o2 4 && pass dist_dpo_equal || fail dist_dpo_equal "$(cat same.out o2.err | tail -5)"

# 5. PPO: rollouts split across ranks, whitening / KL statistics / the adaptive KL controller over the whole
#    batch, minibatches split; with a fixed seed the statistics and weights equal one process's
py "
import json
with open('prompts.jsonl','w') as f:
    for t in ['cat','dog','tree','house','river','book']: f.write(json.dumps({'prompt':f'Tell me about the {t}.'})+'\n')"
PP="--policy base --reward m1 --prompts prompts.jsonl -b 3 --samples 2 --max-new 6 --lr 3e-4 --vf-lr 1e-3 --ppo-epochs 2 --minibatch 3 --beta 0.5 --kl-target 3 --seed 11 --iters 3 --json --eps 1e-6"
$GPTKIT ppo $PP --out x1 > x1.jsonl 2>x1.err
$MPI $GPTKIT ppo $PP --out x2 > x2.jsonl 2>x2.err
if py "
import json,sys
sys.path.insert(0,'.'); import st
K=['score','reward','kl','beta','entropy','clip_frac','approx_kl','policy_loss','value_loss','resp_len','ended']
A=[json.loads(l) for l in open('x1.jsonl') if '\"score\"' in l and '\"kl\"' in l]
B=[json.loads(l) for l in open('x2.jsonl') if '\"score\"' in l and '\"kl\"' in l]
bad=[(i,k,a[k],b[k]) for i,(a,b) in enumerate(zip(A,B)) for k in K if abs(a[k]-b[k])>1e-5*max(1,abs(a[k]))]
dw=max(st.maxdiff('x1/model.safetensors','x2/model.safetensors'), st.maxdiff('x1/value/model.safetensors','x2/value/model.safetensors'))
print(len(A),len(B),bad[:4],dw)
sys.exit(0 if len(A)==len(B)==3 and not bad and dw<=1e-5 else 1)" > ppo.chk 2>&1; then pass dist_ppo_equal; [ -n "$DIST_VERBOSE" ] && cat ppo.chk x2.jsonl >&2
else fail dist_ppo_equal "$(cat ppo.chk x2.err | tail -6)"; fi

# GRPO the same way: prompts split for the rollouts, rewards and group advantages on the gathered batch, old and
# reference log-probs split and gathered, minibatches split (both normalisations of the loss)
py "
import json
with open('gprompts.jsonl','w') as f:
    for t in ['cat','dog','tree','house','river','book']: f.write(json.dumps({'prompt':f'Tell me about the {t}.','answer':'good'})+'\n')"
for tn in "" "--token-norm"; do
  GR="--policy base --prompts gprompts.jsonl -b 3 -G 4 --max-new 10 --temperature 1.5 --format-reward 0.5 --lr 1e-3 --beta 0.04 --minibatch 5 --grpo-epochs 2 --seed 5 --iters 4 --sample-every 0 --eps 1e-6 --json $tn"
  $GPTKIT grpo $GR --out y1 > y1.jsonl 2>y1.err
  $MPI $GPTKIT grpo $GR --out y2 > y2.jsonl 2>y2.err
  if py "
import json,sys
sys.path.insert(0,'.'); import st
K=['reward','accuracy','format','reward_std','kl','kl_k3','loss','clip_frac','approx_kl','resp_len','ended']
A=[json.loads(l) for l in open('y1.jsonl') if '\"kl_k3\"' in l]
B=[json.loads(l) for l in open('y2.jsonl') if '\"kl_k3\"' in l]
bad=[(i,k,a[k],b[k]) for i,(a,b) in enumerate(zip(A,B)) for k in K if abs(a[k]-b[k])>1e-5*max(1,abs(a[k]))]
dw=st.maxdiff('y1/model.safetensors','y2/model.safetensors')
moved=[a['loss'] for a in A if a['loss']!=0]   # a run whose groups all tied would test nothing
print(len(A),len(B),bad[:4],dw,moved)
sys.exit(0 if len(A)==len(B)==4 and moved and not bad and dw<=1e-5 else 1)" > grpo.chk 2>&1; then pass "dist_grpo_equal${tn:+_token_norm}"
  else fail "dist_grpo_equal${tn:+_token_norm}" "$(cat grpo.chk y2.err | tail -6)"; fi
  [ -n "$DIST_VERBOSE" ] && cat grpo.chk >&2
done

# 6. faults. A killed rank: Open MPI's runtime ends the job (the default MPI_ERRORS_ARE_FATAL handler plus
#    mpirun's watch over its children) in seconds and names the rank; the last checkpoint survives and resumes.
FT="--model d2 --n-embd 32 --n-head 4 --vocab-size 97 --n-ctx 16 --seed 7 -b 2 -t 12 --total-batch 48 --lr 3e-3 --save-every 10 --data d.bin --json"
start_ready '"step":25,' kill.jsonl kill.err mpirun --oversubscribe -np 2 $GPTKIT pretrain $FT --steps 1000000 --out k
r1=""
for p in $(pgrep -P $READY_PID); do tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && r1=$p; done
t0=$(date +%s%N)
[ -n "$r1" ] && kill -9 $r1
cat <&"$READY_FD" >> kill.jsonl; exec {READY_FD}<&-
wait $READY_PID; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $READY = 1 ] && [ -n "$r1" ] && [ $rc -ne 0 ] && [ $ms -lt 10000 ] && grep -q "process rank 1 .*exited on signal 9" kill.err; then
  pass dist_killed_rank_ends_job
else fail dist_killed_rank_ends_job "ready=$READY rank1=$r1 rc=$rc ${ms}ms $(tail -5 kill.err)"; fi
# the run went on while the kill was on its way: resume to 10 steps past the last step it printed
last=$(grep -o '"step":[0-9]*' kill.jsonl | tail -1 | cut -d: -f2)
end=$(( ${last:-25} + 10 ))
if $GPTKIT pretrain --resume k --steps $end --json > kr.jsonl 2>kr.err && grep -q "\"step\":$((end - 1))," kr.jsonl; then pass dist_killed_checkpoint_resumes
else fail dist_killed_checkpoint_resumes "to step $end: $(tail -3 kr.err) $(tail -1 kr.jsonl)"; fi

# Ctrl-C to mpirun (it sends the ranks SIGTERM, then SIGKILL after a grace of 1 s): every rank stops at the same
# step and rank 0 saves once. SIGUSR1, which mpirun forwards without ending the job, does the same for runs
# whose step and save outlast that grace, and mpirun then exits 130.
for sig in INT USR1; do
  start_ready '"step":3,' s$sig.jsonl s$sig.err mpirun --oversubscribe -np 2 $GPTKIT pretrain $FT --save-every 0 --steps 1000000 --out s$sig
  kill -$sig $READY_PID 2>/dev/null
  cat <&"$READY_FD" >> s$sig.jsonl; exec {READY_FD}<&-
  wait $READY_PID; rc=$?
  n=$(grep -c '\[interrupt\]' s$sig.err)
  if [ $READY = 1 ] && [ -f s$sig/train_state.safetensors ] && [ "$n" = 2 ] && { [ $sig = INT ] || [ $rc = 130 ]; } &&
     $GPTKIT pretrain --resume s$sig --steps 1 --json >/dev/null 2>&1; then pass dist_sig${sig}_saves_once
  elif [ $sig = INT ] && [ $READY = 1 ] && [ "$n" = 2 ] && [ ! -e s$sig/train_state.safetensors ]; then
    # both ranks took the interrupt but mpirun's SIGKILL (1 s after its SIGTERM) came before the save ended: a
    # timing fact of a busy machine, not a verdict; SIGUSR1 below is the path that does not race a clock
    skip dist_sigINT_saves_once "mpirun killed the ranks 1 s after Ctrl-C, before the save ended (step + save took longer than its grace here; SIGUSR1 is the tested path)"
  else fail dist_sig${sig}_saves_once "ready=$READY rc=$rc interrupts=$n $(ls s$sig 2>&1) $(tail -3 s$sig.err)"; fi
done

# 7. two "hosts" on this machine: two network namespaces joined by a veth pair, Open MPI over TCP between them
#    (mpirun in namespace A; its rsh agent starts Open MPI's daemon in namespace B by `ip netns exec`). The
#    2-rank pretraining run over the veth link equals the 1-rank run. Needs root and network namespaces.
NA=gkA$$; NB=gkB$$; VA=gva$$; VB=gvb$$
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add $NA 2>/dev/null; then
  skip dist_two_hosts "network namespaces are not allowed here (needs root and iproute2's ip netns)"
else
  trap 'ip netns del $NA 2>/dev/null; ip netns del $NB 2>/dev/null; rm -rf "$TMP"' EXIT
  if ip netns add $NB && ip link add $VA type veth peer name $VB && ip link set $VA netns $NA && ip link set $VB netns $NB &&
     ip -n $NA addr add 10.77.0.1/24 dev $VA && ip -n $NB addr add 10.77.0.2/24 dev $VB &&
     ip -n $NA link set lo up && ip -n $NB link set lo up && ip -n $NA link set $VA up && ip -n $NB link set $VB up; then
    cat > agent.sh <<AEOF
#!/bin/sh
# Open MPI's rsh agent: "agent HOST COMMAND..." runs COMMAND in the namespace that owns HOST's address
h=\$1; shift
case \$h in 10.77.0.1) ns=$NA;; 10.77.0.2) ns=$NB;; *) echo "agent.sh: unknown host \$h" >&2; exit 1;; esac
exec ip netns exec \$ns sh -c "\$*"
AEOF
    chmod +x agent.sh
    NET="--mca plm_rsh_agent $TMP/agent.sh --host 10.77.0.1,10.77.0.2 --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24"
    ( unset OMPI_MCA_btl OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include
      timeout 120 ip netns exec $NA mpirun -np 2 $NET sh -c 'ip -o -4 addr show | grep -o "10\.77\.0\.[12]"' > where.txt 2>where.err
      timeout 120 ip netns exec $NA mpirun -np 2 $NET $GPTKIT pretrain $PT --out h2 > h2.jsonl 2>h2.err )
    if [ "$(sort where.txt | tr '\n' ' ')" = "10.77.0.1 10.77.0.2 " ] && same p1.jsonl h2.jsonl p1 h2 8; then pass dist_two_hosts
    else fail dist_two_hosts "$(cat where.txt where.err same.out h2.err 2>/dev/null | tail -8)"; fi
  else
    skip dist_two_hosts "could not make the veth pair between the namespaces"
  fi
fi
