/*
 * vaspace_core_api.h: what vaspace._core offers the package's other C
 * extensions (the heap), through the capsule "vaspace._core._C_API".
 *
 * Why it exists: memory in the window moves.  A switch parks a segment's
 * mapping and may place another segment at the same address; a detach unmaps
 * it.  Any C object that keeps a raw pointer into the window (a heap, a numpy
 * view of a heap array) must either stop the move (an *export*) or notice it
 * before the next access (a *generation* check).  _core is the only place
 * that moves mappings, so it owns both facts.
 *
 * A *token* names one mapping of one segment file in this process for its
 * whole life (a u64 counter, never reused, never 0).  A mapping is *placed*
 * while it sits at its segment's own address (visible), *parked* otherwise.
 * A forked child has none of its parent's mappings: where the parent had
 * exports, the child gets zero pages under a new token (so any handle bound
 * to a parent's token finds token_at() != its token: stale), and
 * export_drop() of the parent's token still drops what the parent held.
 *
 * Every function below must be called with the GIL held: the GIL is what
 * makes "check, then touch the memory" atomic against a switch in another
 * thread of the process.  A caller that releases the GIL in between must
 * hold an export across that stretch (export_hold / export_drop).
 *
 * Usage (the heap):
 *     api = PyCapsule_Import(VASPACE_CORE_API_CAPSULE, 0);
 *     token = api->token_at(base);            // at open; 0 = not in the window
 *     gen = *api->window_gen;
 *     ...each call...
 *     if (*api->window_gen != gen) {           // something moved: look again
 *         if (api->token_at(base) != token) -> ValueError("stale heap: ...")
 *         gen = *api->window_gen;
 *     }
 */
#ifndef VASPACE_CORE_API_H
#define VASPACE_CORE_API_H

#include <stdint.h>

#define VASPACE_CORE_API_CAPSULE "vaspace._core._C_API"
#define VASPACE_CORE_API_VERSION 1

typedef struct vaspace_core_api {
    int version; /* VASPACE_CORE_API_VERSION */

    /* Bumped by every change to what is placed in the window: a move (either
     * way), a map, an unmap or a plug.  Equal to a remembered value means
     * nothing moved since. */
    const volatile uint64_t *window_gen;

    /* The token of the placed mapping whose range holds addr, or 0. */
    uint64_t (*token_at)(uintptr_t addr);

    /* Take one export on a placed mapping.  While any export is held,
     * whatever would move or unmap that mapping refuses with BufferError and
     * changes nothing.  Returns 0, or -1 (no exception set) if the token is
     * not placed. */
    int (*export_hold)(uint64_t token);

    /* Drop one export taken by export_hold.  Never fails. */
    void (*export_drop)(uint64_t token);

    /* The name of the segment the token's mapping belongs to (for messages),
     * or NULL if the token is unknown.  Valid until the next call into
     * vaspace. */
    const char *(*token_name)(uint64_t token);
} vaspace_core_api;

#endif /* VASPACE_CORE_API_H */
