/* fuzz_tools.c: what a model (or a task file) can hand gptkit — a tool call's text through the registry (JSON,
 * then calc's expression parser) and one line of a `gptkit solve` task file. The python tool is not enabled:
 * running arbitrary programs is the sandbox's job (tests/test_tools.c), not a parser's. */
#include "infer/strategy.h"
#include "tools/tools.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static tool_registry *reg;
    gk_err err;
    if (!reg) { reg = tools_new(); tools_enable(reg, "calc", &err); }
    char *s = fuzz_str(data, n);
    char *res = tools_call(reg, s, n, NULL);
    free(res);
    char *out = NULL;
    if (tools_calc_eval(s, &out, &err) == 0) free(out);
    strategy_example x;
    if (strategy_task_parse(s, "fuzz.jsonl", 1, &x, &err) == 0) strategy_example_free(&x);
    answer_rule r = {ANSWER_NUMBER, NULL};
    char ans[STRATEGY_ANSWER_MAX];
    strategy_extract(&r, NULL, s, ans, sizeof ans);
    r.kind = ANSWER_TEXT;
    strategy_extract(&r, NULL, s, ans, sizeof ans);
    r.kind = ANSWER_CHOICE;
    strategy_extract(&r, NULL, s, ans, sizeof ans);
    free(s);
    return 0;
}
