from qaserve.core.length import (
    LengthPolicy,
    cap_sentences,
    choose_plan,
    cut_at_markers,
    tidy_end,
    trim_partial_sentence,
)
from qaserve.core.reasoning import split_reasoning
from qaserve.settings import DEFAULT_BUDGET_RULES, BudgetRule, GenerationSettings


def test_first_matching_rule_decides_the_budget():
    rules = [
        BudgetRule(name="code", keywords=["代码", "kernel"], max_tokens=300, max_sentences=0),
        BudgetRule(name="long", keywords=["详细"], max_tokens=200),
    ]
    assert choose_plan("请写出向量加法的代码", rules, 100, 3).max_tokens == 300
    code = choose_plan("详细说明并给出代码", rules, 100, 3)
    assert (code.rule, code.max_sentences) == ("code", 0)
    long = choose_plan("详细说明共享内存", rules, 100, 3)
    assert (long.rule, long.max_tokens, long.max_sentences) == ("long", 200, 3)
    assert choose_plan("什么是warp？", rules, 100, 3).rule == "default"


def test_keywords_match_ascii_case_insensitively():
    plan = choose_plan("Write a CUDA Kernel", DEFAULT_BUDGET_RULES, 100, 0)
    assert plan.rule == "code"


def test_cut_at_markers_drops_the_example_tail():
    text = "共享内存位于片上，延迟低。例如，在分块矩阵乘法中……"
    assert cut_at_markers(text, ["例如", "比如"]) == "共享内存位于片上，延迟低。"
    # A marker at the start would leave nothing: the text stays as it is.
    assert cut_at_markers("例如线程块。", ["例如"]) == "例如线程块。"
    assert cut_at_markers("没有标记。", ["例如"]) == "没有标记。"


def test_cap_sentences_keeps_the_first_n():
    text = "第一句。第二句！第三句？第四句"
    assert cap_sentences(text, 2, "。！？") == "第一句。第二句！"
    assert cap_sentences(text, 0, "。！？") == text
    assert cap_sentences(text, 9, "。！？") == text


def test_trim_partial_sentence_needs_one_complete_sentence():
    assert trim_partial_sentence("完整的一句。没写完的", "。") == "完整的一句。"
    assert trim_partial_sentence("没有句号的片段", "。") == "没有句号的片段"


def test_tidy_end_removes_dangling_separators_but_not_code():
    assert tidy_end("  线程块由线程组成，\n") == "线程块由线程组成"
    assert tidy_end("int i = 0;") == "int i = 0;"


def test_predicts_answer_leaves_the_reasoning_out():
    def answer(text: str) -> str:
        return split_reasoning(text, thinking=False)[1]

    assert answer("<think>先想一想</think>\n\n答案。") == "答案。"
    assert answer("推理过程</think>答案。") == "答案。"
    assert answer("<think>\n\n</think>\n\n答案。") == "答案。"
    assert answer("答案。") == "答案。"


def test_policy_sends_markers_to_the_engine_only_when_trimming():
    off = LengthPolicy(GenerationSettings(stop_strings=["\n\n"], trim_examples=False))
    assert off.engine_stops() == ("\n\n",)
    on = LengthPolicy(GenerationSettings(stop_strings=["\n\n"], trim_examples=True))
    assert on.engine_stops() == ("\n\n", "例如", "比如")


def test_finalize_applies_each_enabled_rule():
    policy = LengthPolicy(GenerationSettings(trim_examples=True, trim_partial_sentence=True))
    text = "全局内存容量大。访问延迟高。例如每次访问"
    assert policy.finalize(text, 0, "stop") == "全局内存容量大。访问延迟高。"
    assert policy.finalize("一。二。三", 0, "length") == "一。二。"
    assert policy.finalize("一。二。三", 1, "length") == "一。"
