/*
 * Dataset archives, shared by the server (which validates an upload) and
 * the worker (which extracts it for a task): the one table of dataset
 * formats and their member names, and the one reader of dataset archives.
 *
 * An archive is a tar (ustar, pax or GNU; plain or gzip-compressed as a
 * whole), read with libarchive. It comes from a team over the network, so
 * the reader applies the same rules for both programs:
 *   - members are regular files (a "./" or "." directory entry, which
 *     `tar -C dir .` writes, is skipped); links, devices, other directories
 *     are refused;
 *   - a member's name, less one leading "./", is one of the format's file
 *     names (IDX files may also come gzipped as NAME.gz); anything else,
 *     paths included, is refused by name;
 *   - each member appears at most once (IDX: NAME and NAME.gz count as one);
 *   - the members' sizes add up to at most max_bytes.
 * Errors name the member: DP_EINVAL for a member the rules refuse,
 * DP_EFORMAT for an archive libarchive cannot read, DP_ETRUNC for one that
 * ends early, DP_ETOOBIG past max_bytes. Messages carry no prefix; callers
 * say which archive ("dataset upload: ...").
 *
 *     struct dp_dataset_reader *r;
 *     err = dp_dataset_open(path, "idx", max, &r, &ei);
 *     while (!err && (err = dp_dataset_next(r, &m, &ei)) == DP_OK && m.index >= 0)
 *         ... dp_dataset_read(r, buf, cap, &got, &ei) until got == 0 ...
 *     dp_dataset_close(r);
 *
 * libarchive allocates with malloc, outside dp_malloc's accounting.
 */
#ifndef DP_COMMON_DATASET_H
#define DP_COMMON_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define DP_DATASET_MAX_MEMBERS 6

/* The most bytes one dataset archive may hold once decompressed: bounds a
 * gzip bomb on the server and the disk the worker fills. */
#define DP_DATASET_MAX_BYTES (16ull << 30)

/* What one member of a format holds: a split and images, labels or both
 * (CIFAR-10 records are a label byte and the pixels). */
enum dp_dataset_split { DP_DATASET_TRAIN, DP_DATASET_TEST };
enum dp_dataset_kind { DP_DATASET_IMAGES, DP_DATASET_LABELS, DP_DATASET_RECORDS };

struct dp_dataset_part {
    enum dp_dataset_split split;
    enum dp_dataset_kind kind;
};

struct dp_dataset_format {
    const char *name;   /* as the API names it: "idx", "cifar10", "npy" */
    const char *engine; /* the engine's data spec prefix ("cifar:DIR") */
    int n_members;
    const char *members[DP_DATASET_MAX_MEMBERS];      /* names in an archive, docs/api.md order */
    const char *engine_names[DP_DATASET_MAX_MEMBERS]; /* the same files as the engine reads them */
    struct dp_dataset_part parts[DP_DATASET_MAX_MEMBERS]; /* what each member holds */
    int gz_members; /* members may also come gzipped, as NAME.gz (kept so on disk) */
};

/* The format called name ("idx", "cifar10", "npy"), or NULL (name may be NULL). */
const struct dp_dataset_format *dp_dataset_format_find(const char *name);

/* The format whose engine data spec prefix is engine ("idx", "cifar", "npy"), or NULL. */
const struct dp_dataset_format *dp_dataset_format_engine(const char *engine);

/*
 * The engine's file names of f's members that hold kind for split, in table
 * order, into names (cap entries); returns how many there are (which may
 * exceed cap: only cap are stored). The engine's loaders read their file
 * names from here, so that the names the worker extracts and the names the
 * engine opens are one list.
 */
int dp_dataset_engine_files(const struct dp_dataset_format *f, enum dp_dataset_split split,
                            enum dp_dataset_kind kind, const char **names, int cap);

/* Writes "idx, cifar10, npy" into buf (cap bytes, truncated). */
void dp_dataset_format_list(char *buf, size_t cap);

struct dp_dataset_reader;

struct dp_dataset_member {
    int index;        /* into the format's members; -1: the end of the archive */
    int gz;           /* the member is NAME.gz (IDX) */
    uint64_t size;    /* bytes, as stored in the archive */
    const char *name; /* as in the archive less "./"; valid until the next call */
};

/* Opens the archive at path for format. On success *out must be closed. */
enum dp_err dp_dataset_open(const char *path, const char *format, uint64_t max_bytes,
                            struct dp_dataset_reader **out, struct dp_errinfo *ei);

/* The format r was opened for. */
const struct dp_dataset_format *dp_dataset_reader_format(const struct dp_dataset_reader *r);

/* Advances to the next member, skipping the unread rest of the current one,
 * and checks it against the rules above. m->index is -1 at the end. */
enum dp_err dp_dataset_next(struct dp_dataset_reader *r, struct dp_dataset_member *m,
                            struct dp_errinfo *ei);

/* Reads up to cap bytes of the current member into buf; *got 0: its end. */
enum dp_err dp_dataset_read(struct dp_dataset_reader *r, void *buf, size_t cap, size_t *got,
                            struct dp_errinfo *ei);

/* Closes r; accepts NULL. */
void dp_dataset_close(struct dp_dataset_reader *r);

/*
 * Extracts the archive at tar_path into the existing directory dir for
 * format, writing at most max_bytes in total, each member under the
 * engine's name (NPY x_train.npy -> train_images.npy, ...). On success
 * writes the engine's data spec ("idx:DIR", ...) into data_spec (cap
 * bytes). Contents are not checked (the server did at upload; the engine's
 * loaders do again). Fails with DP_EFORMAT for a member the rules refuse
 * or an unreadable archive (the task's input is malformed, whoever is to
 * blame), DP_ETRUNC, DP_ETOOBIG or an I/O error; messages start with
 * "dataset tar: " and name the member.
 */
enum dp_err dp_dataset_extract(const char *tar_path, const char *format, const char *dir,
                               uint64_t max_bytes, char *data_spec, size_t cap,
                               struct dp_errinfo *ei);

#endif
