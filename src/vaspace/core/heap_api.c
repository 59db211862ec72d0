/*
 * core/heap_api.c: what vaspace._core offers the heap's C extension through
 * the capsule "vaspace._core._C_API" (vaspace_core_api.h has the contract).
 */
#include "core.h"

static uint64_t
api_token_at(uintptr_t addr)
{
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (e->token && e->placed && e->home <= addr && addr < e->home + e->len)
            return e->token;
    }
    return 0;
}

static int
api_export_hold(uint64_t token)
{
    tmap_t *e = tmap_find(token);
    if (e == NULL || !e->placed)
        return -1;
    tmap_hold(e);
    return 0;
}

static void
api_export_drop(uint64_t token)
{
    tmap_t *e = tmap_find_export(token);
    if (e != NULL)
        tmap_drop(e);
}

static const char *
api_token_name(uint64_t token)
{
    tmap_t *e = tmap_find(token);
    return e == NULL ? NULL : e->name;
}

const vaspace_core_api core_api = {
    VASPACE_CORE_API_VERSION, &window_gen, api_token_at, api_export_hold, api_export_drop,
    api_token_name,
};
