/*
 * tests/unit/libcommon/config/dotenv.c - `.env` parsing: the syntax of the common dotenv tools and
 * errors that name the line (never the value).
 *
 * Covers comments, blank lines, `export`, spaces around '=', empty values, single and double
 * quotes with their escapes, multi-line quoted values, inline comments, CRLF, a BOM, bare
 * names, and malformed lines (unterminated quotes, junk after a quote, bad names, NUL bytes),
 * plus loading from a file (missing file = nothing, directory = error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dotenv.h"
#include "util.h"

struct got {
    struct buf text; /* "NAME=[value]\n" per call */
    int calls;
};

static void collect(void *arg, const char *name, const char *value)
{
    struct got *g = arg;
    buf_printf(&g->text, "%s=[%s]\n", name, value);
    g->calls++;
}

/* Parses s; returns what was collected (caller frees) or NULL with err filled. */
static char *parse(const char *s, size_t len, char *err, size_t errlen)
{
    struct got g = {{0}, 0};
    buf_init(&g.text);
    buf_puts(&g.text, "");
    if (dotenv_parse(s, len, collect, &g, err, errlen)) {
        buf_destroy(&g.text);
        return NULL;
    }
    char *r = xstrdup(g.text.data);
    buf_destroy(&g.text);
    return r;
}

static void expect(const char *in, const char *want)
{
    char err[256] = "";
    char *got = parse(in, strlen(in), err, sizeof err);
    if (!got)
        fail_msg("unexpected error \"%s\" for input:\n%s", err, in);
    assert_string_equal(got, want);
    free(got);
}

static void expect_error(const char *in, size_t len, const char *want_err)
{
    char err[256] = "";
    char *got = parse(in, len, err, sizeof err);
    if (got)
        fail_msg("expected error \"%s\", parsed:\n%s", want_err, got);
    assert_string_equal(err, want_err);
}

static void basics(void **state)
{
    (void)state;
    expect("", "");
    expect("\n\n   \n\t\n", "");
    expect("# comment\n  # indented comment\nA=1\n", "A=[1]\n");
    expect("A=1\nB=two words\n", "A=[1]\nB=[two words]\n");
    expect("A = 1\nB\t=\t2  \n", "A=[1]\nB=[2]\n");
    expect("export A=1\nexport\tB=2\n", "A=[1]\nB=[2]\n");
    expect("export=3\n", "export=[3]\n");
    expect("A=\nB=  \nC=''\nD=\"\"\n", "A=[]\nB=[]\nC=[]\nD=[]\n");
    expect("A=1", "A=[1]\n");
    expect("a.b_C9=x\n_X=y\n", "a.b_C9=[x]\n_X=[y]\n");
    expect("A=1\nA=2\n", "A=[1]\nA=[2]\n");
    expect("URL=postgresql://u:p@h:5432/db?x=1&y=2\n",
           "URL=[postgresql://u:p@h:5432/db?x=1&y=2]\n");
    expect("K=abc=def==\n", "K=[abc=def==]\n");
}

static void comments_in_values(void **state)
{
    (void)state;
    expect("A=value # comment\n", "A=[value]\n");
    expect("A=value#not-a-comment\n", "A=[value#not-a-comment]\n");
    expect("A=#starts-with-hash\n", "A=[#starts-with-hash]\n");
    expect("A= # only a comment\n", "A=[]\n");
    expect("A='q # kept' # dropped\n", "A=[q # kept]\n");
    expect("A=\"q # kept\"# dropped\n", "A=[q # kept]\n");
}

static void quotes(void **state)
{
    (void)state;
    expect("A='single $HOME \\n'\n", "A=[single $HOME \\n]\n");
    expect("A='it\\'s'\n", "A=[it's]\n");
    expect("A='back\\\\slash'\n", "A=[back\\slash]\n");
    expect("A=\"line1\\nline2\\ttab\\\"q\\\" \\\\ \\$x \\r\"\n",
           "A=[line1\nline2\ttab\"q\" \\ $x \r]\n");
    expect("A=\"unknown \\q escape\"\n", "A=[unknown \\q escape]\n");
    expect("A=\"multi\nline\nvalue\"\nB=2\n", "A=[multi\nline\nvalue]\nB=[2]\n");
    expect("A='multi\nline'\n", "A=[multi\nline]\n");
    expect("A=mid'quote\"s\n", "A=[mid'quote\"s]\n");
    expect("A=\"  padded  \"\n", "A=[  padded  ]\n");
}

static void line_ends_and_bom(void **state)
{
    (void)state;
    expect("A=1\r\nB=\"2\"\r\n# c\r\n", "A=[1]\nB=[2]\n");
    expect("\xEF\xBB\xBF"
           "A=1\n",
           "A=[1]\n");
    expect("A=x\ry\n", "A=[x\ry]\n");
}

static void bare_names(void **state)
{
    (void)state;
    expect("ONLY_NAME\nA=1\n", "A=[1]\n");
    expect("ONLY_NAME # comment\n", "");
}

static void malformed(void **state)
{
    (void)state;
    const char *s;
    s = "A=1\nB=\"unterminated\nC=3\n";
    expect_error(s, strlen(s), "line 2: unterminated double-quoted value");
    s = "\n\nA='open";
    expect_error(s, strlen(s), "line 3: unterminated single-quoted value");
    s = "A=\"x\" trailing\n";
    expect_error(s, strlen(s), "line 1: unexpected characters after the closing quote");
    s = "A=\"multi\nline\" junk\n";
    expect_error(s, strlen(s), "line 2: unexpected characters after the closing quote");
    s = "A=1\n=nokey\n";
    expect_error(s, strlen(s), "line 2: expected a variable name");
    s = "A=1\n\n9A=1\n";
    expect_error(s, strlen(s), "line 3: expected a variable name");
    s = "MY-VAR=1\n";
    expect_error(s, strlen(s), "line 1: expected '=' after the variable name");
    s = "A B=1\n";
    expect_error(s, strlen(s), "line 1: expected '=' after the variable name");
    s = "export \n";
    expect_error(s, strlen(s), "line 1: expected a variable name");
    s = "A=1\nB=2\0\n";
    expect_error(s, 9, "line 2: NUL byte in file");
    s = "A=\"a\\\"";
    expect_error(s, strlen(s), "line 1: unterminated double-quoted value");
}

static void error_never_shows_value(void **state)
{
    (void)state;
    char err[256] = "";
    const char *s = "SECRET=\"hunter2-topsecret\" x\n";
    assert_null(parse(s, strlen(s), err, sizeof err));
    assert_null(strstr(err, "hunter2"));
}

static void from_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/dotenv-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/.env", dir);
    struct got g = {{0}, 0};
    buf_init(&g.text);
    char err[512] = "";
    /* Missing file: nothing, no error. */
    assert_int_equal(dotenv_load(path, collect, &g, err, sizeof err), 0);
    assert_int_equal(g.calls, 0);
    FILE *f = fopen(path, "w");
    fputs("export A='1'\nB=\"x\ny\"\nC\n", f);
    fclose(f);
    assert_int_equal(dotenv_load(path, collect, &g, err, sizeof err), 0);
    assert_int_equal(g.calls, 2);
    assert_string_equal(g.text.data, "A=[1]\nB=[x\ny]\n");
    f = fopen(path, "w");
    fputs("A=1\n\nB='x\n", f);
    fclose(f);
    assert_int_equal(dotenv_load(path, collect, &g, err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: line 3: unterminated single-quoted value", path);
    assert_string_equal(err, want);
    /* A directory is not a .env file. */
    assert_int_equal(dotenv_load(dir, collect, &g, err, sizeof err), -1);
    unlink(path);
    rmdir(dir);
    buf_destroy(&g.text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basics),
        cmocka_unit_test(comments_in_values),
        cmocka_unit_test(quotes),
        cmocka_unit_test(line_ends_and_bom),
        cmocka_unit_test(bare_names),
        cmocka_unit_test(malformed),
        cmocka_unit_test(error_never_shows_value),
        cmocka_unit_test(from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
