// Jinja chat-template renderer: golden conformance cases (rendered by Python Jinja2 the way transformers does)
// plus unit tests of the semantics real chat templates rely on.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "zaya/jinja.h"

namespace {

using nlohmann::ordered_json;
using zaya::jinja::RenderOptions;
using zaya::jinja::Template;

RenderOptions frozen_now() {  // the golden cases were rendered with strftime_now frozen at 2026-01-15 10:30:00
  RenderOptions o;
  std::tm tm{};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 0;
  tm.tm_mday = 15;
  tm.tm_hour = 10;
  tm.tm_min = 30;
  tm.tm_sec = 0;
  o.now = tm;
  return o;
}

std::string render(const std::string& src, const ordered_json& ctx = ordered_json::object()) {
  return Template(src).render(ctx, frozen_now());
}

struct CaseResult {
  int total = 0, passed = 0;
};

CaseResult run_case_file(const std::string& rel) {
  std::string path = zaya::test::require_path(zaya::test::data_dir() + "/" + rel);
  std::ifstream in(path);
  CaseResult res;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ordered_json c = ordered_json::parse(line);
    ++res.total;
    std::string name = c.value("template_name", std::string("?")) + "/" + c.value("case", std::string("?"));
    SCOPED_TRACE(name);
    std::string got, error;
    bool threw_template_exception = false;
    try {
      got = Template(c.at("template").get<std::string>()).render(c.at("context"), frozen_now());
    } catch (const zaya::jinja::TemplateException& e) {
      error = e.what();
      threw_template_exception = true;
    } catch (const zaya::Error& e) {
      error = e.what();
    }
    if (c.contains("expected_error")) {
      std::string want = c.at("expected_error").get<std::string>();
      EXPECT_TRUE(threw_template_exception) << name << ": expected raise_exception(" << want << "), got "
                                            << (error.empty() ? "output:\n" + got : "error: " + error);
      EXPECT_EQ(error, want) << name;
      if (threw_template_exception && error == want) ++res.passed;
    } else {
      std::string want = c.at("expected").get<std::string>();
      EXPECT_EQ(error, "") << name;
      EXPECT_EQ(got, want) << name;
      if (error.empty() && got == want) ++res.passed;
    }
  }
  return res;
}

// ---- golden conformance -----------------------------------------------------------------------------------------
TEST(JinjaGolden, ChatTemplateCases) {
  CaseResult r = run_case_file("golden/chat-templates/cases.jsonl");
  EXPECT_EQ(r.total, 46);
  EXPECT_EQ(r.passed, r.total);
}

TEST(JinjaGolden, TinyAChatCases) {
  CaseResult r = run_case_file("golden/zaya1-text/tiny-a/chat-cases.jsonl");
  EXPECT_EQ(r.total, 6);
  EXPECT_EQ(r.passed, r.total);
}

TEST(JinjaGolden, TinyAChatTemplateFileMatchesCases) {
  // The folder's chat_template.jinja is the template the chat cases use.
  std::string dir = zaya::test::data_dir() + "/golden/zaya1-text/tiny-a/";
  std::string file = zaya::test::read_file(zaya::test::require_path(dir + "chat_template.jinja"));
  std::ifstream in(zaya::test::require_path(dir + "chat-cases.jsonl"));
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  ordered_json c = ordered_json::parse(line);
  EXPECT_EQ(Template(file).render(c.at("context"), frozen_now()),
            Template(c.at("template").get<std::string>()).render(c.at("context"), frozen_now()));
}

// ---- errors -----------------------------------------------------------------------------------------------------
TEST(JinjaErrors, SyntaxErrorReportsLineAndColumn) {
  try {
    Template t("line one\n  {{ a + }}\n");
    FAIL() << "expected a syntax error";
  } catch (const zaya::jinja::TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 10);
    EXPECT_NE(std::string(e.what()).find("line 2, column 10"), std::string::npos) << e.what();
  }
  try {
    Template t("{% if x %}\nabc\n");
    FAIL() << "expected a syntax error";
  } catch (const zaya::jinja::TemplateError& e) {
    EXPECT_NE(std::string(e.what()).find("endif"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Template("{% for x in y %}{% endif %}"), zaya::jinja::TemplateError);
  EXPECT_THROW(Template("{{ x | no_such_filter }}"), zaya::jinja::TemplateError);
  // Like Jinja, an unknown filter inside an if-branch only fails when that branch runs.
  EXPECT_EQ(render("{% if false %}{{ x | no_such_filter }}{% endif %}ok"), "ok");
  EXPECT_THROW(render("{% if true %}{{ x | no_such_filter }}{% endif %}"), zaya::jinja::TemplateError);
  EXPECT_THROW(Template("{{ x is no_such_test }}"), zaya::jinja::TemplateError);
  EXPECT_THROW(Template("{% break %}"), zaya::jinja::TemplateError);
  EXPECT_THROW(Template("{{ 'abc }}"), zaya::jinja::TemplateError);
  EXPECT_THROW(Template("{# never closed"), zaya::jinja::TemplateError);
  EXPECT_THROW(Template("{% do x %}"), zaya::jinja::TemplateError);  // not enabled in transformers
}

TEST(JinjaErrors, RuntimeErrorReportsPosition) {
  try {
    render("ok\n{{ 1 + 'a' }}");
    FAIL();
  } catch (const zaya::jinja::TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
  }
  try {
    render("{{ messages.x.y }}", {{"messages", ordered_json::object()}});
    FAIL();
  } catch (const zaya::jinja::TemplateError& e) {
    EXPECT_EQ(e.line(), 1);
  }
}

TEST(JinjaErrors, RaiseExceptionMessageIsExact) {
  try {
    render("a{{ raise_exception('Bad role: ' ~ role) }}b", {{"role", "x"}});
    FAIL();
  } catch (const zaya::jinja::TemplateException& e) {
    EXPECT_STREQ(e.what(), "Bad role: x");
  }
}

TEST(JinjaErrors, SandboxForbidsMutation) {
  EXPECT_THROW(render("{% set xs = [1] %}{{ xs.append(2) }}"), zaya::Error);
  EXPECT_THROW(render("{% set d = {} %}{{ d.update({'a': 1}) }}"), zaya::Error);
  EXPECT_THROW(render("{{ range(1000000) | length }}"), zaya::Error);
}

TEST(JinjaErrors, DeepRecursionIsAnErrorNotACrash) {
  EXPECT_THROW(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), zaya::jinja::TemplateError);
  std::string deep(5000, '(');
  deep = "{{ " + deep + "1" + std::string(5000, ')') + " }}";
  EXPECT_THROW(Template{deep}, zaya::jinja::TemplateError);
  std::string nested;
  for (int i = 0; i < 1000; ++i) nested += "{% if true %}";
  EXPECT_THROW(Template{nested}, zaya::jinja::TemplateError);
  std::string chain = "{{ 1";
  for (int i = 0; i < 20000; ++i) chain += " + 1";
  EXPECT_THROW(Template{chain + " }}"}, zaya::jinja::TemplateError);
}

TEST(JinjaErrors, VeryLongTemplateRenders) {
  std::string src;
  for (int i = 0; i < 20000; ++i) src += "{% if i is defined %}{{ i }}{% endif %}x";
  std::string out = render(src, {{"i", 1}});
  EXPECT_EQ(out.size(), 40000u);
  std::string chain = "{{ 0";
  for (int i = 0; i < 500; ++i) chain += " + 1";
  EXPECT_EQ(render(chain + " }}"), "500");
}

// ---- undefined / none -------------------------------------------------------------------------------------------
TEST(JinjaUndefined, Behaviour) {
  EXPECT_EQ(render("[{{ missing }}]"), "[]");
  EXPECT_EQ(render("{{ missing is defined }} {{ missing is undefined }} {{ none is defined }}"), "False True True");
  EXPECT_EQ(render("{% if missing %}y{% else %}n{% endif %}"), "n");
  EXPECT_EQ(render("{% for x in missing %}{{ x }}{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{{ missing | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }}"), "d  d");
  EXPECT_EQ(render("{{ d.nokey is defined }} {{ d['nokey'] is defined }} {{ d.k }}", {{"d", {{"k", 1}}}}),
            "False False 1");
  EXPECT_EQ(render("{{ 'a' in missing }} {{ missing | length }} {{ missing ~ 'x' }}"), "False 0 x");
  EXPECT_EQ(render("{{ xs[5] is defined }} {{ none.attr is defined }}", {{"xs", {1, 2}}}), "False False");
  EXPECT_EQ(render("{{ x }} {{ x is none }} {{ x is not none }}", {{"x", nullptr}}), "None True False");
  EXPECT_THROW(render("{{ missing.attr }}"), zaya::jinja::TemplateError);
  EXPECT_THROW(render("{{ missing + 1 }}"), zaya::jinja::TemplateError);
  EXPECT_EQ(render("{{ (1 if false) is defined }}"), "False");
}

// ---- whitespace control ----------------------------------------------------------------------------------------
TEST(JinjaWhitespace, TrimAndLstripBlocks) {
  EXPECT_EQ(render("{% if true %}\n  yes\n{% endif %}\n"), "  yes\n");
  EXPECT_EQ(render("<ul>\n    {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n    {% endfor %}\n</ul>"),
            "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>");
  EXPECT_EQ(render("a  {{- ' b ' -}}  c"), "a b c");
  EXPECT_EQ(render("a\n  {%- if true -%}\n  b\n  {%- endif %}"), "ab");
  EXPECT_EQ(render("  {%+ if true %}x{% endif %}"), "  x");  // '+' disables lstrip_blocks
  EXPECT_EQ(render("{% if true +%}\nx{% endif %}"), "\nx");   // '+' disables trim_blocks
  EXPECT_EQ(render("  {# comment #}\nx"), "x");
  EXPECT_EQ(render("x {{ 1 }}  {% if true %}y{% endif %}"), "x 1  y");  // lstrip only at line start
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  EXPECT_EQ(render("keep\n"), "keep");       // one trailing newline dropped
  EXPECT_EQ(render("keep\n\n"), "keep\n");
  EXPECT_EQ(render("a\r\nb"), "a\nb");
}

// ---- statements -------------------------------------------------------------------------------------------------
TEST(JinjaStatements, LoopControlsAndLoopVariables) {
  EXPECT_EQ(render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}"
                   "{% endif %}{{ i }}{% endfor %}"),
            "0134");
  EXPECT_EQ(render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
            "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|");
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.previtem | default('-') }}{{ loop.nextitem | default('-') }}"
                   "{{ loop.cycle('a', 'b') }} {% endfor %}"),
            "-2a 13b 2-a ");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                   {{"d", ordered_json::parse(R"({"z": 1, "a": 2})")}}),
            "z=1;a=2;");
  EXPECT_EQ(render("{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}"),
            "121122");
  EXPECT_EQ(render("{% for n in tree recursive %}{{ n.name }}{% if n.kids %}({{ loop(n.kids) }}){% endif %}{% endfor %}",
                   {{"tree", ordered_json::parse(R"([{"name":"a","kids":[{"name":"b"},{"name":"c"}]}])")}}),
            "a(bc)");
}

TEST(JinjaStatements, SetScopingAndNamespace) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + 10 %}{{ x }} {% endfor %}{{ x }}"), "11 11 1");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(render("{% set x %}a{{ 1 + 1 }}b{% endset %}[{{ x }}]"), "[a2b]");
  EXPECT_EQ(render("{% set x | upper %}abc{% endset %}{{ x }}"), "ABC");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
  EXPECT_EQ(render("{% with a = 3 %}{{ a }}{% endwith %}[{{ a }}]"), "3[]");
  EXPECT_EQ(render("{% filter upper %}abc{{ 'd' }}{% endfilter %}"), "ABCD");
  EXPECT_EQ(render("{% generation %}kept{% endgeneration %}"), "kept");
}

TEST(JinjaStatements, MacrosWithDefaultsKwargsAndCaller) {
  EXPECT_EQ(render("{% macro m(a, b=2, c='x') %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, c='y') }} "
                   "{{ m(a=0, b=9) }}"),
            "12x 12y 09x");
  EXPECT_EQ(render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                   "{% call wrap('b') %}bold{% endcall %}"),
            "<b>bold</b>");
  EXPECT_EQ(render("{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}"
                   "{% call(item) each([1, 2]) %}[{{ item }}]{% endcall %}"),
            "[1][2]");
  EXPECT_EQ(render("{% macro v() %}{{ varargs | length }}{{ kwargs.k }}{% endmacro %}{{ v(1, 2, k=3) }}"), "23");
  EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}"
                   "{{ fact(5) }}"),
            "120");
  EXPECT_EQ(render("{% macro m() %}{% set local = 1 %}{{ outer }}{% endmacro %}{% set outer = 'o' %}{{ m() }}{{ local }}"),
            "o");
  EXPECT_THROW(render("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), zaya::jinja::TemplateError);
}

// ---- expressions ------------------------------------------------------------------------------------------------
TEST(JinjaExpressions, PythonPrintingAndArithmetic) {
  EXPECT_EQ(render("{{ 1.0 }} {{ 2.5 }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ 10 / 5 }}"),
            "1.0 2.5 1e+20 0.30000000000000004 2.5 2.0");
  EXPECT_EQ(render("{{ true }} {{ none }} {{ [1, 'a', none, true] }} {{ {'k': 'v'} }} {{ (1,) }}"),
            "True None [1, 'a', None, True] {'k': 'v'} (1,)");
  EXPECT_EQ(render("{{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }}"),
            "-4 2 -2 1024 0.5 3.0");
  EXPECT_EQ(render("{{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none }} {{ 'x' + 'y' }}"), "ababab [1, 2] a1None xy");
  EXPECT_EQ(render("{{ [\"it's\"] }}"), "[\"it's\"]");
  EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ [1, {'a': 2}] == [1, {'a': 2}] }}"),
            "True False True True");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 'k' in {'k': 1} }} {{ 2 not in [1, 3] }}"), "True True True");
  EXPECT_EQ(render("{{ 'yes' if 0 else 'no' }} {{ 0 or 'x' }} {{ 1 and 'y' }} {{ not none }}"), "no x y True");
  EXPECT_EQ(render("{{ 'a' + x | trim + 'b' }}", {{"x", "  q  "}}), "aqb");  // filters bind tighter than +
  EXPECT_EQ(render("{{ \"a\\nb\\t\\\"c\\\"\" }}"), "a\nb\t\"c\"");
}

TEST(JinjaExpressions, SlicingAndCodePoints) {
  ordered_json ctx = {{"s", "h\xC3\xA9llo\xF0\x9F\x98\x80"}, {"xs", {1, 2, 3, 4}}};  // "héllo😀"
  EXPECT_EQ(render("{{ s | length }} {{ s[1] }} {{ s[-1] }} {{ s[:-1] }} {{ s[::-1] }}", ctx),
            "6 \xC3\xA9 \xF0\x9F\x98\x80 h\xC3\xA9llo \xF0\x9F\x98\x80oll\xC3\xA9h");
  EXPECT_EQ(render("{{ xs[1:] }} {{ xs[:2] }} {{ xs[::2] }} {{ xs[::-1] }} {{ xs[-2:] }} {{ xs[:] }}", ctx),
            "[2, 3, 4] [1, 2] [1, 3] [4, 3, 2, 1] [3, 4] [1, 2, 3, 4]");
  EXPECT_EQ(render("{{ '\xC3\xA9t\xC3\xA9' | upper }} {{ '\xC3\x89T\xC3\x89'.lower() }}"), "\xC3\x89T\xC3\x89 \xC3\xA9t\xC3\xA9");
}

TEST(JinjaExpressions, StringAndDictMethods) {
  EXPECT_EQ(render("{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\nq'.lstrip('\\n') }}|{{ 'q  '.rstrip() }}"),
            "a b|a|q|q");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a-b-c'.rsplit('-', 1) }}"),
            "['a', 'b', '', 'c'] ['a', 'b'] ['a-b', 'c']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'hello world'.title() }} "
                   "{{ 'hELLO'.capitalize() }} {{ 'aXa'.replace('a', 'b') }} {{ 'abcb'.find('b') }} "
                   "{{ 'abcb'.count('b') }} {{ '-'.join(['a', 'b']) }}"),
            "True True Hello World Hello bXb 1 2 a-b");
  EXPECT_EQ(render("{{ '{} is {:>4}|{n}'.format('x', 7, n='k') }} {{ '%s=%d %.2f' % ('a', 3, 1.5) }}"),
            "x is    7|k a=3 1.50");
  ordered_json d = ordered_json::parse(R"({"b": 1, "a": 2, "items": "key"})");
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }} {{ d.keys() | list }} {{ d.values() | list }}",
                   {{"d", d}}),
            "2 None 5 ['b', 'a', 'items'] [1, 2, 'key']");
  EXPECT_EQ(render("{{ d['items'] }} {{ d.items() | list | length }}", {{"d", d}}), "key 3");
}

// ---- filters and tests ------------------------------------------------------------------------------------------
TEST(JinjaFilters, MapSelectRejectDictsortDefault) {
  ordered_json users = ordered_json::parse(R"([{"name":"b","age":3,"on":true},{"name":"a","age":1,"on":false},
                                               {"name":"c","age":2}])");
  ordered_json ctx = {{"users", users}};
  EXPECT_EQ(render("{{ users | map(attribute='name') | join(',') }}", ctx), "b,a,c");
  EXPECT_EQ(render("{{ users | map(attribute='on', default='?') | list }}", ctx), "[True, False, '?']");
  EXPECT_EQ(render("{{ ['a', 'B'] | map('upper') | list }}"), "['A', 'B']");
  EXPECT_EQ(render("{{ users | selectattr('on') | map(attribute='name') | list }}", ctx), "['b']");
  EXPECT_EQ(render("{{ users | rejectattr('name', 'equalto', 'a') | map(attribute='name') | list }}", ctx), "['b', 'c']");
  EXPECT_EQ(render("{{ users | selectattr('age', '>', 1) | map(attribute='name') | list }}", ctx), "['b', 'c']");
  EXPECT_EQ(render("{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} "
                   "{{ [0, 1, '', 'x'] | select | list }} {{ [1, 2, 1] | reject('equalto', 1) | list }}"),
            "[1, 3] [2, 4] [1, 'x'] [2]");
  EXPECT_EQ(render("{{ d | dictsort }} {{ d | dictsort(by='value', reverse=true) }}",
                   {{"d", ordered_json::parse(R"({"b": 1, "A": 3, "c": 2})")}}),
            "[('A', 3), ('b', 1), ('c', 2)] [('A', 3), ('c', 2), ('b', 1)]");
  EXPECT_EQ(render("{{ users | sort(attribute='age') | map(attribute='name') | join }} {{ ['b', 'A', 'c'] | sort }} "
                   "{{ [3, 1, 2] | sort(reverse=true) }} {{ ['a', 'A', 'b'] | unique | list }}",
                   ctx),
            "acb ['A', 'b', 'c'] [3, 2, 1] ['a', 'b']");
  EXPECT_EQ(render("{{ x | default('d') }} {{ none | default('d') }} {{ 0 | d('d', true) }}"), "d None d");
}

TEST(JinjaFilters, ScalarsAndJson) {
  EXPECT_EQ(render("{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} "
                   "{{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 7 | round }}"),
            "42 4 7 3 2.5 3 2.57 2.0 7");
  EXPECT_EQ(render("{{ [1, 2, 3] | sum }} {{ [3, 1] | min }} {{ [3, 1] | max }} {{ [1, 2] | first }} {{ 'ab' | last }} "
                   "{{ [1, 2] | reverse | list }} {{ 'ab' | list }}"),
            "6 1 3 1 b [2, 1] ['a', 'b']");
  EXPECT_EQ(render("{{ 'hello world-x' | title }} {{ 'a\\nb' | indent(2) }} {{ 'a\\nb' | indent(2, true) }} "
                   "{{ '<a&>' | e }} {{ 'a b c' | wordcount }} {{ 'abc' | replace('b', '') }} {{ ' x ' | trim }}"),
            "Hello World-X a\n  b   a\n  b &lt;a&amp;&gt; 3 ac x");
  ordered_json ctx = {{"v", ordered_json::parse(R"({"b": [1, 2.0, "é\"\n"], "a": null, "t": true})")}};
  EXPECT_EQ(render("{{ v | tojson }}", ctx), "{\"b\": [1, 2.0, \"é\\\"\\n\"], \"a\": null, \"t\": true}");
  EXPECT_EQ(render("{{ v | tojson(indent=2) }}", ctx),
            "{\n  \"b\": [\n    1,\n    2.0,\n    \"é\\\"\\n\"\n  ],\n  \"a\": null,\n  \"t\": true\n}");
  EXPECT_EQ(render("{{ v | tojson(sort_keys=true, separators=(',', ':')) }}", ctx),
            "{\"a\":null,\"b\":[1,2.0,\"é\\\"\\n\"],\"t\":true}");
  EXPECT_EQ(render("{{ v | tojson(ensure_ascii=true) }}", ctx),
            "{\"b\": [1, 2.0, \"\\u00e9\\\"\\n\"], \"a\": null, \"t\": true}");
  EXPECT_EQ(render("{{ {'a': [], 'b': {}} | tojson(indent=2) }}"), "{\n  \"a\": [],\n  \"b\": {}\n}");
  EXPECT_EQ(render("{{ v | string }}", ctx), "{'b': [1, 2.0, 'é\"\\n'], 'a': None, 't': True}");
}

TEST(JinjaFilters, SafeMarkupAndDictViewsLikePython) {
  // |safe and |escape give markupsafe.Markup, whose `+` escapes the plain operand even without autoescaping.
  EXPECT_EQ(render("{{ '<a>' + ('x' | safe) }}|{{ '<a>' ~ ('x' | safe) }}|{{ '<b>' | e | e }}"), "&lt;a&gt;x|<a>x|&lt;b&gt;");
  EXPECT_EQ(render("{{ ['a' | safe] }}"), "[Markup('a')]");
  ordered_json d = ordered_json::parse(R"({"k": 1})");
  EXPECT_EQ(render("{{ d.items() }} {{ d.keys() }} {{ d.values() }} {{ d.items()[0] is defined }}", {{"d", d}}),
            "dict_items([('k', 1)]) dict_keys(['k']) dict_values([1]) False");
}

TEST(JinjaTests, TypeTests) {
  EXPECT_EQ(render("{{ 'a' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}"
                   "{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ 1 is iterable }}"),
            "TrueTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(render("{{ false is false }}{{ 0 is false }}{{ true is true }}{{ 4 is even }}{{ 3 is odd }}"
                   "{{ 9 is divisibleby 3 }}{{ 2 is equalto 2 }}{{ 2 is eq(3) }}{{ 'ab' is lower }}{{ 2 is in [1, 2] }}"),
            "TrueFalseTrueTrueTrueTrueTrueFalseTrueTrue");
  EXPECT_EQ(render("{{ raise_exception is callable }}{{ none is none }}{{ x is not defined }}{{ not x is defined }}"),
            "TrueTrueTrueTrue");
}

TEST(JinjaGlobals, StrftimeNowAndRange) {
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %B %Y') }}|"
                   "{{ strftime_now('%A %H:%M') }}"),
            "15 Jan 2026|2026-01-15|15 January 2026|Thursday 10:30");
  EXPECT_EQ(render("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }}"),
            "[0, 1, 2] [1, 3, 5] [3, 2, 1]");
  EXPECT_EQ(render("{{ dict(a=1, b=2) }} {{ namespace(x=1).x }}"), "{'a': 1, 'b': 2} 1");
  // Without an injected time strftime_now still works (real local time).
  EXPECT_EQ(Template("{{ strftime_now('%Y') | length }}").render(ordered_json::object()), "4");
}

TEST(JinjaTemplate, ContextKeyOrderIsKept) {
  ordered_json ctx = ordered_json::parse(R"({"d": {"zeta": 1, "alpha": 2, "mid": 3}})");
  EXPECT_EQ(render("{% for k in d %}{{ k }} {% endfor %}{{ d | tojson }}", ctx),
            "zeta alpha mid {\"zeta\": 1, \"alpha\": 2, \"mid\": 3}");
  Template t("{{ x }}");
  Template copy = t;  // templates are cheap to copy and reusable
  EXPECT_EQ(copy.render({{"x", 1}}), "1");
  EXPECT_EQ(t.render({{"x", 2}}), "2");
}

}  // namespace
