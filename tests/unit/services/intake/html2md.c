/*
 * tests/unit/services/intake/html2md.c - HTML to Markdown: headings, emphasis, links, nested
 * lists, pre blocks, entities, dropped scripts/styles/comments, collapsing of whitespace and
 * blank lines, and hostile input (unterminated tags, huge numeric entities) that must still
 * give text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "services/intake/html2md.h"

static void expect_md(const char *html, const char *want)
{
    char *md = html_to_markdown(html, strlen(html));
    assert_string_equal(md, want);
    free(md);
}

static void test_blocks(void **state)
{
    (void)state;
    expect_md("<h1>Title</h1><p>one   two\nthree</p><h3>Sub</h3>",
              "# Title\n\none two three\n\n### Sub\n");
    expect_md("<p>a<br>b</p><hr><p>c</p>", "a\nb\n\n---\n\nc\n");
    expect_md("<blockquote>quoted</blockquote>", "> quoted\n");
}

static void test_inline(void **state)
{
    (void)state;
    expect_md("<p>Use <b>bold</b>, <em>it</em> and <code>x()</code>.</p>",
              "Use **bold**, *it* and `x()`.\n");
    expect_md("<a href=\"https://e.example/a?b=1\">the link</a>", "[the link](https://e.example/a?b=1)\n");
    expect_md("<a href='x'>q</a>", "[q](x)\n");
}

static void test_lists(void **state)
{
    (void)state;
    expect_md("<ul><li>one</li><li>two<ol><li>a</li><li>b</li></ol></li></ul><p>after</p>",
              "- one\n- two\n  1. a\n  2. b\n\nafter\n");
}

static void test_pre_and_entities(void **state)
{
    (void)state;
    expect_md("<pre>x  =  1\n  y</pre>", "```\nx  =  1\n  y\n```\n");
    expect_md("<p>&lt;tag&gt; &amp; &quot;q&quot; &#233;&#x41; &nbsp;x &bogus; &</p>",
              "<tag> & \"q\" \xc3\xa9" "A x &bogus; &\n");
}

static void test_dropped(void **state)
{
    (void)state;
    expect_md("<html><head><title>T</title><style>p{color:red}</style></head><body>"
              "<script>alert(1)</script><!-- secret --><p>kept</p></body></html>",
              "kept\n");
}

static void test_hostile(void **state)
{
    (void)state;
    expect_md("text <b unterminated", "text <b unterminated\n");
    expect_md("&#99999999999; &#xD800;", "\xef\xbf\xbd \xef\xbf\xbd\n");
    expect_md("", "\n");
    char *deep = malloc(40001);
    for (int i = 0; i < 10000; i++)
        memcpy(deep + i * 4, "<ul>", 4);
    deep[40000] = 0;
    char *md = html_to_markdown(deep, strlen(deep));
    assert_non_null(md);
    free(md);
    free(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks),     cmocka_unit_test(test_inline),
        cmocka_unit_test(test_lists),      cmocka_unit_test(test_pre_and_entities),
        cmocka_unit_test(test_dropped),    cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
