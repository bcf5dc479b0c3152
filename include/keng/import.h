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
/* 0 when the directory could be read (even if some files were refused: see the report). */
int keng_import_dir(keng_store *st, const char *dir, keng_import_report *r);

/* CSV with a header row naming columns among id,name,address,phone,lang,camera,lat,lon,
 * zalo_user_id,telegram_chat_id,email. 0 and *imported; or -EINVAL with "line N: reason" in
 * err (nothing applied); -ENOENT when the group does not exist. */
int keng_import_csv(keng_store *st, const char *group_id, const char *csv, size_t len,
                    int *imported, char *err, size_t errlen);

#endif
