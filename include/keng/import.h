/* import: the ward's groups as data. keng_import_dir reads every groups/ *.json file, checks each
 * one whole (syntax, fields, members defined once across files, references, parent cycles) and
 * applies the good ones in one transaction, idempotently; a bad file is refused whole with
 * file, line and reason and nothing of it is applied. keng_import_csv takes households from a
 * spreadsheet export into one group, all or nothing. Loop thread (store); start-up and SIGHUP. */
#ifndef KENG_IMPORT_H
#define KENG_IMPORT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "keng/store.h"

typedef struct keng_import_report {
    int files_ok, files_bad;
    int groups, members;
    cJSON *errors; /* [{"file","line","reason"}], owned by the report */
} keng_import_report;

void keng_import_report_free(keng_import_report *r);
/* 0 when the directory could be read (even if some files were refused: see the report).
 *
 * Memberships. kengd imports groups/ at every start and on SIGHUP, while the API and CSV
 * imports add households too; members.source tells them apart: "file:NAME" for a member that
 * a groups/ file defines, "api" for one written by POST/PUT /v1/members or /v1/groups, "csv"
 * for one from keng_import_csv. Importing a group's file makes the group's memberships of
 * file members (source "file:…") exactly the file's "members" list (a missing list is an empty
 * one): a household removed from the file leaves the group, wherever it is defined. The
 * group's memberships of "api" and "csv" members are never removed by an import; the file
 * only adds those it lists. A file defines the members it holds as objects: each import
 * writes them again, fields and source, over any edit made meanwhile through the API or a CSV
 * (which set the source to "api"/"csv" until then). So a household that a file defines is
 * governed by the files: an edit through the API or a CSV, including a membership it adds in
 * a group that comes from a file, lasts until the next import unless the files say the same;
 * its memberships in groups created through the API are kept. To change such a household
 * for good, edit its file; to hand it over to the API, remove its definition from the files
 * (it keeps its source "file:…" until the API writes it). Sources are read after all of the
 * import's upserts, so the result does not depend on the order of the files. */
int keng_import_dir(keng_store *st, const char *dir, keng_import_report *r);

/* CSV with a header row naming columns among id,name,address,phone,lang,camera,lat,lon,
 * zalo_user_id,telegram_chat_id,email, each at most once; separated by ',' or, when the header
 * line has no ',' but has ';', by ';' (Excel in a Vietnamese locale). camera takes
 * true/false, 1/0, yes/no, có/không (any case, accents optional) and x; lat/lon decimal
 * numbers with '.' or ','. Members are written with source "csv" and added to the group (the
 * group's other members stay). Linear in the rows, which go to the store as they are read
 * (memory does not grow with the sheet), in one transaction that nests in the caller's; a
 * refused sheet undoes its own rows only. 0 and *imported; or -EINVAL with "line N: reason"
 * in err (nothing applied); -ENOENT when the group does not exist. */
int keng_import_csv(keng_store *st, const char *group_id, const char *csv, size_t len,
                    int *imported, char *err, size_t errlen);

#endif
