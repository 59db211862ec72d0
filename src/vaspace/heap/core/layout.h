/*
 * layout.h -- the heap's on-region format: everything here is bytes inside
 * the shared region, read by every process that maps it.
 *
 * Offsets inside the allocator's own structures (bins, block headers) are
 * relative to the region base; container fields (Dict table, entries, Array
 * data) hold absolute addresses, because the region sits at the same address
 * in every process.  See docs/heap.md for the picture.
 *
 * No CPython here: this header and the files beside it build into a plain C
 * program (tests/heap/c/).
 */
#ifndef VASPACE_HEAP_LAYOUT_H
#define VASPACE_HEAP_LAYOUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

/* ======================================================================== */
/* On-region layout                                                         */
/* ======================================================================== */

#define HEAP_MAGIC 0x3150414548534156ULL /* "VASHEAP1" little-endian */
/* Version 2 (issue 15): container headers carry a parent word, Dict
 * entries an insertion stamp, and List exists.  Version 3: the compact
 * Dict (an index table of small integers into a dense entry area, see
 * dict.c).  Version 4: update lanes (heap_lane, lane.c) after the
 * log.  Other versions are refused at open with a ValueError naming
 * both versions (see validate_header). */
#define HEAP_VERSION 4u
#define NBINS 128
#define NSMALL 63 /* block sizes 32..1024 in steps of 16 */
#define LOG_CAP 2048
#define NROOTS 128
#define ROOT_NAME_MAX 55 /* bytes of UTF-8, NUL-terminated in 56 */
#define DEFER_MAX 8

#define INUSE 1ULL
#define PREV_INUSE 2ULL
#define FLAGS 15ULL
#define MIN_BLOCK 32ULL

typedef struct {
    u64 off;
    u64 old;
} undo_entry;

typedef struct {
    char name[56];
    u64 addr;
} root_entry;

/* Update lanes (lane.c): a Dict SET that overwrites an existing key's
 * inline value in place takes only the lane of its key's hash, not the heap
 * mutex.  Each lane has its own robust mutex, seq (odd while a lane writer
 * is mid-update) and undo log, on cache lines no other lane shares, so
 * writers of different lanes touch no common line. */
#define NLANES 16
#define LANE_LOG 24 /* an in-place value: at most 16 room words + the head word */
typedef struct {
    pthread_mutex_t lock;
    u64 seq;
    u64 log_count;
    u64 pad_;
    undo_entry log[LANE_LOG];
} __attribute__((aligned(64))) heap_lane;

typedef struct {
    u64 magic; /* written last by format */
    u32 version;
    u32 hdr_size;
    u64 size;        /* region size in bytes */
    u64 base;        /* address the region was formatted at */
    u64 bitmap_off;  /* allocation-start bitmap: 1 bit per 16-byte granule */
    u64 bitmap_bytes;
    u64 arena_off;   /* first block */
    u64 arena_end;   /* end of the sentinel block */
    u64 recoveries;  /* number of EOWNERDEAD recoveries */
    u64 used;        /* bytes in allocated blocks, headers included (logged) */
    u64 allocations; /* live allocations (logged) */
    u64 wseq_off;    /* offset of the container seq a writer made odd, or 0 */
    u64 log_count;   /* undo entries; non-zero only inside an operation */
    u64 bins_nonempty[NBINS / 64];
    u64 bins[NBINS]; /* offset of the first free block in each bin, 0 = empty */
    u64 hseq;        /* heap-wide seqlock: odd while a process holds the mutex */
    u64 unflushed;   /* boot tag of a write since the last flush (durable.c), 0 = none */
    u64 lock_boot;   /* boot tag of the lock's initialisation (lock_adopt); even = busy */
    u64 pad_[3];
    pthread_mutex_t lock __attribute__((aligned(64)));
    root_entry roots[NROOTS];
    undo_entry log[LOG_CAP];
    heap_lane lanes[NLANES];
} heap_header;

/* Container headers (allocated in the arena). */
#define DICT_MAGIC 0x3154434944534156ULL  /* "VASDICT1" */
#define ARRAY_MAGIC 0x3159525241534156ULL /* "VASARRY1" */
#define LIST_MAGIC 0x315453494c534156ULL  /* "VASLIST1" */
#define TOMB 1ULL

/* Dict (compact, as CPython's since 3.6): an index table of cap slots
 * (a power of two), each iw bytes (2, 4 or 8, by the area's size), into
 * one dense entry area.  A slot holds 0 (empty), or in its low obits bits
 * 1 + the entry's offset in the area in 8-byte units and in the bits above
 * the top bits of the key's hash (so that most probes of other keys never
 * touch their entries).  Entries follow one another in insertion
 * order; a deleted one stays as a hole (its slot still points at it) until
 * the next rebuild compacts the area.  See docs/heap.md. */
typedef struct {
    u64 magic;
    u64 seq;
    u64 count;  /* live keys */
    u64 nent;   /* entries in the area, holes included (= used slots) */
    u64 cap;    /* index slots, a power of two */
    u64 index;  /* absolute address of cap x iw bytes */
    u64 iw;     /* bytes per index slot: 2, 4 or 8 */
    u64 obits;  /* low bits of a slot holding 1 + offset / 8; the others hold hash bits */
    u64 area;   /* absolute address of the entry area */
    u64 abytes; /* area capacity in bytes */
    u64 aused;  /* area bytes in use (entries and holes); the next entry goes here */
    u64 parent; /* container that holds this one as a value, or 0 */
} dict_hdr;

/* One entry of the area: this 8-byte head, then the key room (klen bytes
 * rounded up to 8; 8 for an out-of-line key), then vroom words of value
 * room.  An out-of-line key or value is a block {u64 len; bytes} whose
 * address sits in the room.  tag: the hash's top 16 bits, so that a probe
 * compares keys only on a likely match. */
typedef struct {
    u8 ktype;
    u8 vtype;
    u8 klen;  /* inline key bytes (8 when DE_KOUT) */
    u8 vroom; /* value room in 8-byte words (at least 1) */
    u8 vlen;  /* inline value bytes (0 when DE_VOUT) */
    u8 flags; /* DE_* */
    u16 tag;
} dict_ent;

#define DE_KOUT 1 /* the key room holds the address of the key's block */
#define DE_VOUT 2 /* the value room holds the address of the value's block */
#define DE_HOLE 4 /* deleted: skipped by probes and walks, dropped at rebuild */
#define DE_KEY_INLINE_MAX 255u
#define DE_VAL_INLINE_MAX 128u

/* A List item: the address of a value entry, one allocation each. */
typedef struct {
    u32 klen;
    u32 vlen;
    u8 ktype;
    u8 vtype;
    u16 order_hi; /* insertion stamp (48 bits): items() sorts by it */
    u32 order_lo;
    /* key bytes, then value bytes */
} dict_entry;

/* T_BIGTEXT (decimal text) is what older versions wrote for ints beyond
 * int64; it is still read.  New big ints are T_BIGINT: little-endian two's
 * complement, so no digit limit applies in any process. */
enum { T_BYTES = 0, T_STR = 1, T_INT = 2, T_BIGTEXT = 3, T_BIGINT = 4 };
/* Value-only tags (keys stay bytes, str and int): None (no bytes), bool (1
 * byte), float (8-byte IEEE double), and references to containers in the
 * same heap (8-byte absolute header address; the container's parent word
 * names the holder: one parent each, see own.c). */
enum { T_NONE = 5, T_BOOL = 6, T_FLOAT = 7, T_DICT = 8, T_ARRAY = 9, T_LIST = 10 };
#define T_IS_REF(t) ((t) >= T_DICT && (t) <= T_LIST)

typedef struct {
    u64 magic;
    u64 seq;
    u64 len;
    u64 cap;
    u64 itemsize;
    u64 data; /* absolute address, 0 if cap == 0 */
    char dtype[32];
    u64 parent; /* container that holds this one as a value, or 0 */
} array_hdr;

/* List: len items, each the address of a value entry (a dict_entry with
 * klen 0), in one items block of cap words. */
typedef struct {
    u64 magic;
    u64 seq;
    u64 len;
    u64 cap;
    u64 items; /* absolute address of cap x u64, 0 if cap == 0 */
    u64 parent;
} list_hdr;

#endif
