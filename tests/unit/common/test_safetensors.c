/*
 * Tests for common/safetensors.c: round trips, every class of corrupt
 * input (each truncation length, crafted headers), typed access, I/O
 * errors, allocation failure and random corruption.
 *
 * Crafted images are built in memory and parsed from exactly-sized heap
 * copies, so ASan catches any read past the end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/safetensors.h"
#include "tests/unit/test_util.h"

/* ---- Fixture: a private temporary directory ------------------------------ */

static char st_dir[64];

static void st_setup(void)
{
    dp_test_tmpdir_make(st_dir, sizeof(st_dir), "st");
}

static void st_teardown(void)
{
    dp_test_tmpdir_remove(st_dir);
}

TestSuite(safetensors, .init = st_setup, .fini = st_teardown, .timeout = 60);

static void st_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", st_dir, name);
}

/* Number of entries in the temporary directory (to catch leftover temp files). */
static int st_dir_count(void)
{
    DIR *d = opendir(st_dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Reads a whole file into a dp_malloc'd buffer. */
static unsigned char *st_slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = dp_malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void st_spit(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(buf, 1, len, fp), len);
    fclose(fp);
}

/*
 * Builds an image from a header string (not padded) and data_len data
 * bytes (0, 1, 2, ...); returns a dp_malloc'd buffer of exactly *len bytes.
 */
static unsigned char *st_craft(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *buf = dp_malloc(*len);
    for (int b = 0; b < 8; b++)
        buf[b] = (unsigned char)((uint64_t)h >> (8 * b));
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + h + i] = (unsigned char)i;
    return buf;
}

/* Parses buf[0, len) from an exactly-sized copy; returns the code and fills ei. */
static enum dp_err st_parse_copy(const unsigned char *buf, size_t len, struct dp_errinfo *ei)
{
    unsigned char *copy = dp_malloc(len ? len : 1);
    if (len)
        memcpy(copy, buf, len);
    struct dp_st_file *f = NULL;
    enum dp_err err = dp_st_parse(copy, len, "crafted.safetensors", &f, ei);
    if (err)
        cr_assert_null(f);
    dp_st_free(f);
    dp_free(copy);
    return err;
}

/* The sample tensors used by several tests. */
struct st_sample {
    float w[6];
    uint8_t mask[4];
    int32_t idx[4];
    int64_t big[3];
    float scalar;
    struct dp_st_tensor t[6];
};

static void st_sample_init(struct st_sample *s)
{
    memset(s, 0, sizeof(*s));
    const float w[6] = {1.5f, -2.25f, 0.0f, -0.0f, 1e-40f, 3.4e38f};
    memcpy(s->w, w, sizeof(w));
    const uint8_t mask[4] = {0, 1, 255, 7};
    memcpy(s->mask, mask, sizeof(mask));
    const int32_t idx[4] = {-1, 0, 2147483647, -2147483647 - 1};
    memcpy(s->idx, idx, sizeof(idx));
    const int64_t big[3] = {INT64_MAX, INT64_MIN, 42};
    memcpy(s->big, big, sizeof(big));
    s->scalar = 0.125f;
    s->t[0] = (struct dp_st_tensor){
        .name = "layer1.weight", .dtype = DP_ST_F32, .ndim = 2, .shape = {2, 3}, .data = s->w};
    s->t[1] = (struct dp_st_tensor){
        .name = "layer1.mask", .dtype = DP_ST_U8, .ndim = 2, .shape = {2, 2}, .data = s->mask};
    s->t[2] = (struct dp_st_tensor){
        .name = "idx", .dtype = DP_ST_I32, .ndim = 1, .shape = {4}, .data = s->idx};
    s->t[3] = (struct dp_st_tensor){
        .name = "big", .dtype = DP_ST_I64, .ndim = 1, .shape = {3}, .data = s->big};
    s->t[4] =
        (struct dp_st_tensor){.name = "scalar", .dtype = DP_ST_F32, .ndim = 0, .data = &s->scalar};
    s->t[5] = (struct dp_st_tensor){
        .name = "empty", .dtype = DP_ST_F32, .ndim = 2, .shape = {0, 5}, .data = NULL};
}

/* Writes the sample with two metadata entries to dir/name. */
static void st_write_sample(const char *path)
{
    struct st_sample s;
    st_sample_init(&s);
    json_t *meta = json_pack("{s:s, s:s}", "format", "pt", "note", "h\xc3\xa9llo");
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = dp_st_write(path, s.t, 6, meta, &ei);
    json_decref(meta);
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
}

/* ---- Round trips --------------------------------------------------------- */

Test(safetensors, round_trip_all_dtypes_and_metadata)
{
    char path[128];
    st_path(path, sizeof(path), "model.safetensors");
    st_write_sample(path);
    cr_assert_eq(st_dir_count(), 1, "the temporary file must be gone");

    struct st_sample s;
    st_sample_init(&s);
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1 << 20, &f, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_st_n_tensors(f), 6);

    /* Data-section order is the writer's order. */
    for (int i = 0; i < 6; i++) {
        const struct dp_st_tensor *t = dp_st_tensor_at(f, i);
        cr_assert_str_eq(t->name, s.t[i].name);
        cr_assert_eq(t->dtype, s.t[i].dtype);
        cr_assert_eq(t->ndim, s.t[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            cr_assert_eq(t->shape[d], s.t[i].shape[d]);
        cr_assert_eq(dp_st_find(f, s.t[i].name), t);
    }
    cr_assert_null(dp_st_tensor_at(f, 6));
    cr_assert_null(dp_st_tensor_at(f, -1));
    cr_assert_null(dp_st_find(f, "nope"));
    cr_assert_eq(dp_st_find(f, "scalar")->numel, 1);
    cr_assert_eq(dp_st_find(f, "empty")->numel, 0);
    cr_assert_eq(dp_st_find(f, "empty")->data_len, 0);

    float w[6];
    uint8_t mask[4];
    int32_t idx[4];
    int64_t big[3];
    float scalar;
    cr_assert_eq(dp_st_read_f32(f, "layer1.weight", w, 6, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(memcmp(w, s.w, sizeof(w)), 0, "F32 must be bit-identical");
    cr_assert_eq(dp_st_read_u8(f, "layer1.mask", mask, 4, &ei), DP_OK);
    cr_assert_eq(memcmp(mask, s.mask, sizeof(mask)), 0);
    cr_assert_eq(dp_st_read_i32(f, "idx", idx, 4, &ei), DP_OK);
    cr_assert_eq(memcmp(idx, s.idx, sizeof(idx)), 0);
    cr_assert_eq(dp_st_read_i64(f, "big", big, 3, &ei), DP_OK);
    cr_assert_eq(memcmp(big, s.big, sizeof(big)), 0);
    cr_assert_eq(dp_st_read_f32(f, "scalar", &scalar, 1, &ei), DP_OK);
    cr_assert_eq(scalar, 0.125f);
    cr_assert_eq(dp_st_read_f32(f, "empty", NULL, 0, &ei), DP_OK);

    cr_assert_str_eq(dp_st_meta_get(f, "format"), "pt");
    cr_assert_str_eq(dp_st_meta_get(f, "note"), "h\xc3\xa9llo");
    cr_assert_null(dp_st_meta_get(f, "missing"));
    cr_assert_eq(json_object_size(dp_st_metadata(f)), 2);
    dp_st_free(f);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, layout_is_the_reference_layout)
{
    char path[128];
    st_path(path, sizeof(path), "layout.safetensors");
    st_write_sample(path);
    size_t len;
    unsigned char *buf = st_slurp(path, &len);
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = (hlen << 8) | buf[b];
    cr_assert_eq(hlen % 8, 0, "the header is padded to 8 bytes");
    cr_assert_eq(buf[8], '{');
    cr_assert_eq(len, 8 + hlen + 24 + 4 + 16 + 24 + 4, "header plus the data bytes");
    /* The first tensor's bytes start the data section, little-endian. */
    float w0;
    memcpy(&w0, buf + 8 + hlen, sizeof(w0));
    cr_assert_eq(w0, 1.5f);
    /* Padding is spaces after the JSON. */
    size_t j = 8 + (size_t)hlen;
    while (j > 8 && buf[j - 1] == ' ')
        j--;
    cr_assert_eq(buf[j - 1], '}');
    dp_free(buf);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, no_metadata_and_no_tensors)
{
    char path[128];
    st_path(path, sizeof(path), "empty.safetensors");
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_st_write(path, NULL, 0, NULL, &ei), DP_OK, "%s", ei.msg);
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1024, &f, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_st_n_tensors(f), 0);
    cr_assert_not_null(dp_st_metadata(f));
    cr_assert_eq(json_object_size(dp_st_metadata(f)), 0);
    cr_assert_null(dp_st_find(f, "x"));
    dp_st_free(f);
    dp_st_free(NULL);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, overwrite_replaces_the_file)
{
    char path[128];
    st_path(path, sizeof(path), "over.safetensors");
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    struct dp_st_tensor ta = {.name = "a", .dtype = DP_ST_F32, .ndim = 1, .shape = {2}, .data = a};
    struct dp_st_tensor tb = {.name = "b", .dtype = DP_ST_F32, .ndim = 1, .shape = {3}, .data = b};
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_st_write(path, &ta, 1, NULL, &ei), DP_OK);
    cr_assert_eq(dp_st_write(path, &tb, 1, NULL, &ei), DP_OK);
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1024, &f, &ei), DP_OK, "%s", ei.msg);
    cr_assert_null(dp_st_find(f, "a"));
    float got[3];
    cr_assert_eq(dp_st_read_f32(f, "b", got, 3, &ei), DP_OK);
    cr_assert_eq(memcmp(got, b, sizeof(b)), 0);
    dp_st_free(f);
    cr_assert_eq(st_dir_count(), 1);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, many_tensors_are_found_by_name)
{
    enum { N = 300 };
    char names[N][16];
    int32_t vals[N];
    struct dp_st_tensor *ts = dp_calloc(N, sizeof(*ts));
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "t%d", (i * 7919) % N);
        vals[i] = i;
        ts[i] = (struct dp_st_tensor){
            .name = names[i], .dtype = DP_ST_I32, .ndim = 1, .shape = {1}, .data = &vals[i]};
    }
    char path[128];
    st_path(path, sizeof(path), "many.safetensors");
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_st_write(path, ts, N, NULL, &ei), DP_OK, "%s", ei.msg);
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1 << 20, &f, &ei), DP_OK, "%s", ei.msg);
    for (int i = 0; i < N; i++) {
        int32_t v;
        cr_assert_eq(dp_st_read_i32(f, names[i], &v, 1, &ei), DP_OK, "%s", names[i]);
        cr_assert_eq(v, i);
    }
    dp_st_free(f);
    dp_free(ts);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, reference_style_file_parses)
{
    /* As the Python reference writes it: metadata first, no trailing padding here. */
    size_t len;
    unsigned char *img = st_craft("{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\","
                                  "\"shape\":[2],\"data_offsets\":[0,8]},\"m\":{\"dtype\":\"U8\","
                                  "\"shape\":[1,3],\"data_offsets\":[8,11]}}",
                                  11, &len);
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_parse(img, len, "ref", &f, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_st_n_tensors(f), 2);
    cr_assert_str_eq(dp_st_tensor_at(f, 0)->name, "w");
    cr_assert_str_eq(dp_st_tensor_at(f, 1)->name, "m");
    uint8_t m[3];
    cr_assert_eq(dp_st_read_u8(f, "m", m, 3, &ei), DP_OK);
    cr_assert_eq(m[0], 8);
    cr_assert_eq(m[2], 10);
    cr_assert_str_eq(dp_st_label(f), "ref");
    dp_st_free(f);
    dp_free(img);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Corrupt input -------------------------------------------------------- */

Test(safetensors, every_truncation_is_etrunc)
{
    char path[128];
    st_path(path, sizeof(path), "trunc.safetensors");
    st_write_sample(path);
    size_t len;
    unsigned char *buf = st_slurp(path, &len);
    for (size_t n = 0; n < len; n++) {
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = st_parse_copy(buf, n, &ei);
        cr_assert_eq(err, DP_ETRUNC, "length %zu of %zu: %s (%s)", n, len, dp_err_name(err),
                     ei.msg);
        cr_assert_eq(ei.code, DP_ETRUNC);
        cr_assert(strstr(ei.msg, "crafted.safetensors: ") == ei.msg, "%s", ei.msg);
        cr_assert(strstr(ei.msg, "truncated") != NULL, "%s", ei.msg);
    }
    /* The same through the file reader, at a few lengths. */
    const size_t cuts[] = {0, 7, 8, 20, len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        st_spit(path, buf, cuts[i]);
        struct dp_errinfo ei = {DP_OK, ""};
        struct dp_st_file *f = NULL;
        cr_assert_eq(dp_st_read(path, 1 << 20, &f, &ei), DP_ETRUNC, "%s", ei.msg);
        cr_assert_null(f);
        cr_assert(strstr(ei.msg, "trunc.safetensors") != NULL, "%s", ei.msg);
    }
    st_spit(path, buf, len);
    cr_assert_eq(st_parse_copy(buf, len, NULL), DP_OK);
    dp_free(buf);
    DP_ASSERT_NO_LEAKS();
}

static const struct {
    const char *header;
    size_t data_len;
    enum dp_err want;
    const char *msg; /* expected substring */
} st_bad[] = {
    /* Not JSON, or not the right JSON. */
    {"{not json", 0, DP_EFORMAT, "header is not valid JSON"},
    {"[1, 2, 3]", 0, DP_EFORMAT, "header is not a JSON object"},
    {"\"str\"", 0, DP_EFORMAT, "header is not valid JSON"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, DP_EFORMAT,
     "not valid JSON"},
    {"{\"\xff\":1}", 0, DP_EFORMAT, "not valid JSON"},
    {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "not valid JSON"},
    /* Entries. */
    {"{\"a\":5}", 0, DP_EFORMAT, "tensor 'a': entry is not a JSON object"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "empty name"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, DP_EFORMAT,
     "tensor 'a': unknown field 'x'"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "tensor 'a': \"dtype\" is missing"},
    {"{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "\"dtype\" is missing or not a string"},
    {"{\"conv1.weight\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, DP_EFORMAT,
     "tensor 'conv1.weight': unsupported dtype 'F16'"},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "unsupported dtype 'f32'"},
    /* Shapes. */
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, DP_EFORMAT, "\"shape\" is missing"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "shape entry 0 is not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1, 2.5],\"data_offsets\":[0,4]}}", 4, DP_EFORMAT,
     "shape entry 1"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     DP_EFORMAT, "9 dimensions; at most 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
     "\"data_offsets\":[0,4]}}",
     4, DP_EFORMAT, "overflows"},
    {"{\"a\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4,
     DP_EFORMAT, "overflows"},
    /* Offsets. */
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, DP_EFORMAT,
     "tensor 'a': data_offsets [0, 12] span 12 bytes but shape [2, 2] of F32 needs 16"},
    {"{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 200,
     DP_ETRUNC, "tensor 'conv1.weight' data_offsets [0, 400] exceed the 200-byte data section"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, DP_EFORMAT,
     "end before they begin"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, DP_EFORMAT,
     "two non-negative integers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, DP_EFORMAT,
     "two non-negative integers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0-4\"}}", 8, DP_EFORMAT,
     "two non-negative integers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, DP_EFORMAT, "\"data_offsets\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775800,"
     "9223372036854775804]}}",
     4, DP_ETRUNC, "exceed the 4-byte data section"},
    /* Tiling of the data section. */
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, DP_EFORMAT, "tensor 'b' overlaps tensor 'a'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, DP_EFORMAT, "overlaps"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
     20, DP_EFORMAT, "bytes [8, 12) before tensor 'b' belong to no tensor"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, DP_EFORMAT,
     "bytes [0, 4)"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, DP_EFORMAT,
     "4 trailing bytes"},
    {"{}", 3, DP_EFORMAT, "3 trailing bytes"},
    /* Names. */
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, DP_EFORMAT, "duplicate name in the header"},
    /* Metadata. */
    {"{\"__metadata__\":{\"k\":1}}", 0, DP_EFORMAT, "metadata value for key 'k' is not a string"},
    {"{\"__metadata__\":[\"k\"]}", 0, DP_EFORMAT, "\"__metadata__\" is not a JSON object"},
    {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, DP_EFORMAT, "duplicate"},
};

Test(safetensors, crafted_headers_are_rejected_with_a_message)
{
    for (size_t i = 0; i < sizeof(st_bad) / sizeof(st_bad[0]); i++) {
        size_t len;
        unsigned char *img = st_craft(st_bad[i].header, st_bad[i].data_len, &len);
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = st_parse_copy(img, len, &ei);
        cr_assert_eq(err, st_bad[i].want, "case %zu (%s): got %s: %s", i, st_bad[i].header,
                     dp_err_name(err), ei.msg);
        cr_assert_eq(ei.code, err);
        cr_assert(strstr(ei.msg, st_bad[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i, ei.msg,
                  st_bad[i].msg);
        cr_assert(strstr(ei.msg, "crafted.safetensors: ") == ei.msg, "%s", ei.msg);
        dp_free(img);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, bad_header_lengths)
{
    static const struct {
        uint64_t hlen;
        size_t total;
        enum dp_err want;
        const char *msg;
    } rows[] = {
        {(uint64_t)1 << 40, 64, DP_ETOOBIG, "exceeds the 104857600-byte limit"},
        {UINT64_MAX, 64, DP_ETOOBIG, "limit"},
        {DP_ST_HEADER_MAX + 1ull, 64, DP_ETOOBIG, "limit"},
        {57, 64, DP_ETRUNC, "header length 57 exceeds the 56 bytes"},
        {0, 64, DP_EFORMAT, "header length 0 is too small"},
        {1, 64, DP_EFORMAT, "header length 1 is too small"},
        {0, 0, DP_ETRUNC, "file is 0 bytes"},
        {0, 7, DP_ETRUNC, "file is 7 bytes"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        unsigned char img[64];
        memset(img, ' ', sizeof(img));
        for (int b = 0; b < 8; b++)
            img[b] = (unsigned char)(rows[i].hlen >> (8 * b));
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = st_parse_copy(img, rows[i].total, &ei);
        cr_assert_eq(err, rows[i].want, "row %zu: %s: %s", i, dp_err_name(err), ei.msg);
        cr_assert(strstr(ei.msg, rows[i].msg) != NULL, "row %zu: '%s'", i, ei.msg);
    }
    /* A header of spaces only is not JSON. */
    unsigned char img[24];
    memset(img, ' ', sizeof(img));
    memset(img, 0, 8);
    img[0] = 16;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(st_parse_copy(img, sizeof(img), &ei), DP_EFORMAT, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, random_corruption_never_crashes)
{
    char path[128];
    st_path(path, sizeof(path), "fuzz.safetensors");
    st_write_sample(path);
    size_t len;
    unsigned char *orig = st_slurp(path, &len);
    unsigned char *buf = dp_malloc(len);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int n_ok = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, orig, len);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t pos = (size_t)(x % len);
            /* Mostly hit the header, where the structure is. */
            if (iter % 3 != 0)
                pos = (size_t)(x % (len < 200 ? len : 200));
            buf[pos] = (unsigned char)(x >> 32);
        }
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = st_parse_copy(buf, len, &ei);
        cr_assert(err == DP_OK || err == DP_EFORMAT || err == DP_ETRUNC || err == DP_ETOOBIG,
                  "iteration %d: %s", iter, dp_err_name(err));
        if (err == DP_OK)
            n_ok++;
        else
            cr_assert_neq(ei.msg[0], '\0');
    }
    cr_assert_gt(n_ok, 0, "flips inside tensor data must still parse");
    dp_free(buf);
    dp_free(orig);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Typed access and I/O errors ------------------------------------------ */

Test(safetensors, typed_access_errors)
{
    char path[128];
    st_path(path, sizeof(path), "typed.safetensors");
    st_write_sample(path);
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1 << 20, &f, &ei), DP_OK);
    float w[8];
    cr_assert_eq(dp_st_read_f32(f, "nope", w, 6, &ei), DP_ENOENT);
    cr_assert(strstr(ei.msg, "no tensor named 'nope'") != NULL, "%s", ei.msg);
    cr_assert_eq(dp_st_read_f32(f, "layer1.weight", w, 5, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "'layer1.weight' has 6 elements (shape [2, 3]), expected 5") != NULL,
              "%s", ei.msg);
    cr_assert_eq(dp_st_read_f32(f, "layer1.mask", w, 4, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "tensor 'layer1.mask' is U8, expected F32") != NULL, "%s", ei.msg);
    int64_t big[3];
    cr_assert_eq(dp_st_read_i64(f, "idx", big, 3, &ei), DP_EFORMAT);
    const struct dp_st_tensor *t = dp_st_find(f, "layer1.weight");
    cr_assert_eq(dp_st_tensor_copy(f, t, DP_ST_F32, w, sizeof(w), &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "holds 24 bytes, expected 32") != NULL, "%s", ei.msg);
    cr_assert_eq(dp_st_tensor_copy(f, t, DP_ST_F32, w, 24, &ei), DP_OK);
    dp_st_free(f);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, dtype_names)
{
    static const char *const names[] = {"F32", "U8", "I32", "I64"};
    static const size_t sizes[] = {4, 1, 4, 8};
    for (int i = 0; i < DP_ST__COUNT; i++) {
        enum dp_st_dtype d;
        cr_assert_str_eq(dp_st_dtype_name((enum dp_st_dtype)i), names[i]);
        cr_assert_eq(dp_st_dtype_size((enum dp_st_dtype)i), sizes[i]);
        cr_assert_eq(dp_st_dtype_from_name(names[i], &d), DP_OK);
        cr_assert_eq((int)d, i);
    }
    enum dp_st_dtype d;
    cr_assert_eq(dp_st_dtype_from_name("BF16", &d), DP_EFORMAT);
    cr_assert_null(dp_st_dtype_name(DP_ST__COUNT));
    cr_assert_eq(dp_st_dtype_size((enum dp_st_dtype) - 1), 0);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, file_errors)
{
    char path[128];
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_st_file *f = (struct dp_st_file *)&ei; /* must be reset to NULL */
    st_path(path, sizeof(path), "missing.safetensors");
    cr_assert_eq(dp_st_read(path, 1024, &f, &ei), DP_ENOENT);
    cr_assert_null(f);
    cr_assert(strstr(ei.msg, "missing.safetensors: cannot open") != NULL, "%s", ei.msg);

    cr_assert_eq(dp_st_read(st_dir, 1024, &f, &ei), DP_EIO, "%s", ei.msg);
    cr_assert(strstr(ei.msg, "not a regular file") != NULL, "%s", ei.msg);

    st_path(path, sizeof(path), "big.safetensors");
    st_write_sample(path);
    cr_assert_eq(dp_st_read(path, 100, &f, &ei), DP_ETOOBIG);
    cr_assert(strstr(ei.msg, "more than the 100 allowed") != NULL, "%s", ei.msg);
    cr_assert_null(f);

    /* A FIFO is refused without blocking on it. */
    st_path(path, sizeof(path), "fifo");
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(dp_st_read(path, 1024, &f, &ei), DP_EIO, "%s", ei.msg);
    cr_assert(strstr(ei.msg, "not a regular file") != NULL, "%s", ei.msg);

    /* Long paths keep their end (the file name) in messages. */
    char longp[400];
    snprintf(longp, sizeof(longp), "%s/%0200d/deep/name-at-the-end.safetensors", st_dir, 0);
    cr_assert_eq(dp_st_read(longp, 1024, &f, &ei), DP_ENOENT);
    cr_assert(strncmp(ei.msg, "...", 3) == 0, "%s", ei.msg);
    cr_assert(strstr(ei.msg, "deep/name-at-the-end.safetensors: cannot open") != NULL, "%s",
              ei.msg);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, writer_rejects_bad_descriptors)
{
    char path[128];
    st_path(path, sizeof(path), "w.safetensors");
    float v[4] = {0};
    struct dp_st_tensor ok = {.name = "a", .dtype = DP_ST_F32, .ndim = 1, .shape = {4}, .data = v};
    struct {
        struct dp_st_tensor t[2];
        int n;
        const char *msg;
    } rows[] = {
        {{ok, ok}, 2, "duplicate tensor name 'a'"},
        {{ok, {.name = "", .dtype = DP_ST_F32, .ndim = 1, .shape = {4}, .data = v}},
         2,
         "tensor 1 has no name"},
        {{{.name = NULL, .dtype = DP_ST_F32, .ndim = 1, .shape = {4}, .data = v}},
         1,
         "tensor 0 has no name"},
        {{{.name = "__metadata__", .dtype = DP_ST_F32, .ndim = 1, .shape = {4}, .data = v}},
         1,
         "is reserved"},
        {{{.name = "b\xff", .dtype = DP_ST_F32, .ndim = 1, .shape = {4}, .data = v}},
         1,
         "not valid UTF-8"},
        {{{.name = "b", .dtype = DP_ST__COUNT, .ndim = 1, .shape = {4}, .data = v}},
         1,
         "unknown dtype"},
        {{{.name = "b", .dtype = DP_ST_F32, .ndim = 9, .shape = {4}, .data = v}},
         1,
         "9 dimensions"},
        {{{.name = "b", .dtype = DP_ST_F32, .ndim = -1, .shape = {4}, .data = v}},
         1,
         "-1 dimensions"},
        {{{.name = "b", .dtype = DP_ST_F32, .ndim = 2, .shape = {4, -1}, .data = v}},
         1,
         "negative dimension -1"},
        {{{.name = "b", .dtype = DP_ST_F32, .ndim = 1, .shape = {4}, .data = NULL}},
         1,
         "tensor 'b' has no data"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(dp_st_write(path, rows[i].t, rows[i].n, NULL, &ei), DP_EINVAL, "row %zu", i);
        cr_assert(strstr(ei.msg, rows[i].msg) != NULL, "row %zu: '%s'", i, ei.msg);
        cr_assert(strstr(ei.msg, "/w.safetensors: ") != NULL, "%s", ei.msg);
    }
    /* Too large: the byte count overflows. */
    struct dp_st_tensor huge = {.name = "h",
                                .dtype = DP_ST_I64,
                                .ndim = 3,
                                .shape = {1 << 30, 1 << 30, 1 << 30},
                                .data = v};
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_st_write(path, &huge, 1, NULL, &ei), DP_ETOOBIG, "%s", ei.msg);
    cr_assert_eq(dp_st_write(path, &ok, -1, NULL, &ei), DP_EINVAL);
    cr_assert_eq(dp_st_write(path, NULL, 1, NULL, &ei), DP_EINVAL);

    json_t *meta = json_pack("{s:s, s:i}", "good", "x", "bad", 3);
    cr_assert_eq(dp_st_write(path, &ok, 1, meta, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "metadata value for key 'bad' is not a string") != NULL, "%s", ei.msg);
    json_decref(meta);
    meta = json_array();
    cr_assert_eq(dp_st_write(path, &ok, 1, meta, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "metadata must be a JSON object") != NULL, "%s", ei.msg);
    json_decref(meta);

    cr_assert_eq(st_dir_count(), 0, "nothing may be written on failure");

    st_path(path, sizeof(path), "no/such/dir/x.safetensors");
    cr_assert_eq(dp_st_write(path, &ok, 1, NULL, &ei), DP_ENOENT);
    cr_assert(strstr(ei.msg, "cannot create a temporary file") != NULL, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, zero_sized_dimension_with_huge_others_is_empty)
{
    char path[128];
    st_path(path, sizeof(path), "z.safetensors");
    struct dp_st_tensor t = {.name = "z",
                             .dtype = DP_ST_F32,
                             .ndim = 3,
                             .shape = {(int64_t)1 << 62, 0, (int64_t)1 << 62},
                             .data = NULL};
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_st_write(path, &t, 1, NULL, &ei), DP_OK, "%s", ei.msg);
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1024, &f, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_st_find(f, "z")->numel, 0);
    dp_st_free(f);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Allocation failure ---------------------------------------------------- */

/*
 * Routes jansson's allocations through dp_malloc too, so that the failure
 * countdown covers the JSON parser and builder.
 */
static json_malloc_t st_saved_malloc;
static json_free_t st_saved_free;

static void st_hook_jansson(void)
{
    json_get_alloc_funcs(&st_saved_malloc, &st_saved_free);
    json_set_alloc_funcs(dp_malloc, dp_free);
}

static void st_unhook_jansson(void)
{
    json_set_alloc_funcs(st_saved_malloc, st_saved_free);
}

Test(safetensors, allocation_failure_in_the_reader)
{
    char path[128];
    st_path(path, sizeof(path), "oom.safetensors");
    st_write_sample(path);
    st_hook_jansson();
    long n;
    int n_fail = 0;
    for (n = 0; n < 100000; n++) {
        struct dp_errinfo ei = {DP_OK, ""};
        struct dp_st_file *f = NULL;
        dp_alloc_fail_after(n);
        enum dp_err err = dp_st_read(path, 1 << 20, &f, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK) {
            cr_assert_eq(dp_st_n_tensors(f), 6);
            dp_st_free(f);
            break;
        }
        /*
         * jansson's lexer reports some allocation failures as syntax errors
         * (its TOKEN_INVALID path); those are clean errors too.
         */
        cr_assert(err == DP_ENOMEM || (err == DP_EFORMAT && strstr(ei.msg, "not valid JSON")),
                  "fail after %ld: %s: %s", n, dp_err_name(err), ei.msg);
        cr_assert_null(f);
        n_fail++;
    }
    st_unhook_jansson();
    cr_assert_lt(n, 100000);
    cr_assert_gt(n_fail, 3, "the reader allocates; the loop must have failed some");
    DP_ASSERT_NO_LEAKS();
}

Test(safetensors, allocation_failure_in_the_writer)
{
    char path[128];
    st_path(path, sizeof(path), "oomw.safetensors");
    struct st_sample s;
    st_sample_init(&s);
    json_t *meta = json_pack("{s:s}", "k", "v");
    st_hook_jansson();
    long n;
    for (n = 0; n < 100000; n++) {
        struct dp_errinfo ei = {DP_OK, ""};
        dp_alloc_fail_after(n);
        enum dp_err err = dp_st_write(path, s.t, 6, meta, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK)
            break;
        cr_assert_eq(err, DP_ENOMEM, "fail after %ld: %s: %s", n, dp_err_name(err), ei.msg);
        cr_assert_eq(st_dir_count(), 0, "fail after %ld left a file", n);
    }
    st_unhook_jansson();
    json_decref(meta);
    cr_assert_lt(n, 100000);
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1 << 20, &f, &ei), DP_OK, "%s", ei.msg);
    dp_st_free(f);
    DP_ASSERT_NO_LEAKS();
}
