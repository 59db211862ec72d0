/*
 * core/lookups.c: the registry's file-system calls: a directory's names
 * (dir_entries), and one registry object's system calls in one call
 * (issue 11).
 */
#include "core.h"

PyDoc_STRVAR(dir_entries_doc,
"dir_entries(fd) -> list[str]\n\nThe names in the directory open at ``fd`` (without '.' and '..'),\n"
"decoded as os.listdir decodes them.  Like os.listdir(fd) it reads from the\n"
"descriptor's position, which every reader leaves at the start, and rewinds\n"
"after; unlike it, it uses the descriptor as is (os.listdir(fd) dups,\n"
"fstats and fcntls it first: 8 system calls for a small directory, this\n"
"makes 3: getdents64 until it returns 0, then lseek).");

struct vaspace_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static PyObject *
vaspace_dir_entries(PyObject *self, PyObject *arg)
{
    long lfd = PyLong_AsLong(arg);
    if (lfd == -1 && PyErr_Occurred())
        return NULL;
    if (lfd < 0 || lfd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int fd = (int)lfd;
    /* Kept off the stack, so a deep caller cannot overflow a small thread stack. */
    enum { BUF = 16384 };
    char *buf = PyMem_RawMalloc(BUF);
    if (buf == NULL)
        return PyErr_NoMemory();
    PyObject *list = PyList_New(0);
    if (list == NULL)
        goto fail;
    for (;;) {
        long n;
        Py_BEGIN_ALLOW_THREADS
        n = syscall(SYS_getdents64, fd, buf, (unsigned int)BUF);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct vaspace_dirent64 *d = (struct vaspace_dirent64 *)(buf + off);
            if (d->d_reclen == 0 || off + d->d_reclen > n)
                break; /* the kernel never does this; never loop on it */
            off += d->d_reclen;
            size_t len = strnlen(d->d_name, (size_t)(buf + off - d->d_name));
            if ((len == 1 && d->d_name[0] == '.') ||
                (len == 2 && d->d_name[0] == '.' && d->d_name[1] == '.'))
                continue;
            PyObject *name = PyUnicode_DecodeFSDefaultAndSize(d->d_name, (Py_ssize_t)len);
            if (name == NULL)
                goto fail;
            int rc = PyList_Append(list, name);
            Py_DECREF(name);
            if (rc < 0)
                goto fail;
        }
    }
    off_t pos;
    Py_BEGIN_ALLOW_THREADS
    pos = lseek(fd, 0, SEEK_SET);
    Py_END_ALLOW_THREADS
    if (pos < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    PyMem_RawFree(buf);
    return list;
fail:
    PyMem_RawFree(buf);
    Py_XDECREF(list);
    return NULL;
}

/*
 * A registry object is a directory <kind>/<id> whose ``index`` link names its
 * encoded name, and a name link names/<kind>/<encoded name> -> <id>.  Pinning
 * it (registry/ref.py) is open + readlinkat + readlink; its attributes are an
 * fstatat of one file inside; a segment's attach also reads its ``region``
 * and opens its ``data``.  These entries make exactly those system calls,
 * with the flags the Python code used (O_NOFOLLOW everywhere; O_NONBLOCK and
 * a file type check by fstat before any read), and return the raw results:
 * every decision (is the id the one asked for, is the region sane, is the
 * data file of the right size) stays in Python.  The system calls run with
 * the GIL released (a root on a disk may block), and on error nothing that
 * was opened stays open.
 *
 * The one check made here is syntactic and protects the next system call:
 * an ``index`` that is empty, ".", ".." or holds a '/' is never used as a
 * path component under names/ (ENOENT, as for a missing index).
 *
 * Errors are OSError subclasses by errno, whose ``filename`` names the step
 * that failed: the directory's path, "index", the name link's path, the
 * attribute file, "region" or "data".  A region or data file that is not a
 * regular file is EIO.
 */

/* Buffers sized for what vaspace writes, so that a lookup touches little
 * memory (a fresh process faults in every new page it touches): an index is
 * an encoded name (at most 255 bytes), a name link's target an id (at most
 * 10 digits), a region "start-end\n" at most 34 bytes.  A longer index or
 * target is ENAMETOOLONG (never a live object); a region read that fills
 * its buffer is returned as read, and Python refuses it as junk. */
/* A system call retried while a signal interrupts it (PEP 475's rule; on a
 * network or FUSE root, open and read may be interrupted). */
#define LK_RETRY(call)                                                   \
    ({                                                                   \
        __typeof__(call) r_;                                             \
        do                                                               \
            r_ = (call);                                                 \
        while (r_ < 0 && errno == EINTR);                                \
        r_;                                                              \
    })

enum { LK_INDEX = 256 + 1, LK_TARGET = 32, LK_REGION = 64, LK_PATH = 4096 + LK_INDEX };

typedef struct {
    int dfd, ffd;              /* the object's directory; data (open_segment) */
    int err;                   /* 0, or the errno of the step that failed */
    const char *where;         /* that step's file name */
    char index[LK_INDEX];
    ssize_t index_len;
    char target[LK_TARGET];
    ssize_t target_len;        /* -1: the name link was not read */
    struct stat st;            /* stat_live: the attribute file; open_segment: data */
    char region[LK_REGION];
    ssize_t region_len;
    char path[LK_PATH];        /* the name link's path (last: only its start is touched) */
} lookup_t;

static int
lk_fail(lookup_t *lk, int err, const char *where)
{
    lk->err = err;
    lk->where = where;
    if (lk->ffd >= 0)
        close(lk->ffd);
    if (lk->dfd >= 0)
        close(lk->dfd);
    lk->ffd = lk->dfd = -1;
    return -1;
}

/* open + readlinkat("index") [+ readlink(prefix + index)]; no GIL needed. */
static int
lk_open_live(lookup_t *lk, const char *dirpath, const char *prefix)
{
    lk->ffd = -1;
    lk->err = 0;
    lk->where = NULL;
    lk->target_len = -1;
    lk->region_len = -1;
    lk->dfd = LK_RETRY(open(dirpath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (lk->dfd < 0)
        return lk_fail(lk, errno, dirpath);
    lk->index_len = LK_RETRY(readlinkat(lk->dfd, "index", lk->index, sizeof(lk->index)));
    if (lk->index_len < 0)
        return lk_fail(lk, errno, "index");
    if (lk->index_len == (ssize_t)sizeof(lk->index))
        return lk_fail(lk, ENAMETOOLONG, "index");
    lk->index[lk->index_len] = '\0';
    if (prefix == NULL)
        return 0;
    if (lk->index_len == 0 || memchr(lk->index, '/', (size_t)lk->index_len) != NULL ||
        strcmp(lk->index, ".") == 0 || strcmp(lk->index, "..") == 0)
        return lk_fail(lk, ENOENT, "index");
    int n = snprintf(lk->path, sizeof(lk->path), "%s%s", prefix, lk->index);
    if (n < 0 || (size_t)n >= sizeof(lk->path))
        return lk_fail(lk, ENAMETOOLONG, prefix);
    lk->target_len = LK_RETRY(readlink(lk->path, lk->target, sizeof(lk->target)));
    if (lk->target_len < 0)
        return lk_fail(lk, errno, lk->path);
    if (lk->target_len == (ssize_t)sizeof(lk->target))
        return lk_fail(lk, ENAMETOOLONG, lk->path);
    lk->target[lk->target_len] = '\0';
    return 0;
}

/* stat_live's rest: fstatat(attr_file, AT_SYMLINK_NOFOLLOW), then close. */
static int
lk_stat_attr(lookup_t *lk, const char *attr_file)
{
    if (LK_RETRY(fstatat(lk->dfd, attr_file, &lk->st, AT_SYMLINK_NOFOLLOW)) < 0)
        return lk_fail(lk, errno, attr_file);
    close(lk->dfd);
    lk->dfd = -1;
    return 0;
}

/* openat(name) O_NOFOLLOW|O_NONBLOCK into lk->ffd, fstat into lk->st: EIO unless regular. */
static int
lk_open_regular_at(lookup_t *lk, const char *name, int access)
{
    lk->ffd = LK_RETRY(openat(lk->dfd, name, access | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (lk->ffd < 0)
        return lk_fail(lk, errno, name);
    if (LK_RETRY(fstat(lk->ffd, &lk->st)) < 0)
        return lk_fail(lk, errno, name);
    if (!S_ISREG(lk->st.st_mode))
        return lk_fail(lk, EIO, name);
    return 0;
}

/* open_segment's rest: read "region" (a regular file), open "data" (one too). */
static int
lk_open_data(lookup_t *lk, int data_flags)
{
    if (lk_open_regular_at(lk, "region", O_RDONLY) < 0)
        return -1;
    lk->region_len = LK_RETRY(read(lk->ffd, lk->region, sizeof(lk->region)));
    if (lk->region_len < 0)
        return lk_fail(lk, errno, "region");
    close(lk->ffd);
    lk->ffd = -1;
    if (data_flags < 0)
        return 0; /* the region only */
    return lk_open_regular_at(lk, "data", data_flags);
}

/* The arguments every lookup takes: the directory's path and the name-link prefix. */
typedef struct {
    PyObject *dir, *prefix; /* bytes (prefix NULL for None) */
    lookup_t *lk;
} lk_call_t;

static int
lk_begin(lk_call_t *c, PyObject *dir, PyObject *prefix)
{
    c->dir = c->prefix = NULL;
    c->lk = NULL;
    if (!PyUnicode_FSConverter(dir, &c->dir))
        return -1;
    if (prefix != Py_None && !PyUnicode_FSConverter(prefix, &c->prefix))
        return -1;
    c->lk = PyMem_RawMalloc(sizeof(lookup_t)); /* 5 KiB: kept off small thread stacks */
    if (c->lk == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
lk_end(lk_call_t *c, PyObject *result)
{
    if (result == NULL && c->lk != NULL && c->lk->err) {
        errno = c->lk->err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, c->lk->where);
    }
    PyMem_RawFree(c->lk);
    Py_XDECREF(c->dir);
    Py_XDECREF(c->prefix);
    return result;
}

static const char *
lk_pre(lk_call_t *c)
{
    return c->prefix != NULL ? PyBytes_AS_STRING(c->prefix) : NULL;
}

/* A new tuple from ``n`` new references (NULL entries: fail, dropping the rest). */
static PyObject *
lk_tuple(Py_ssize_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    PyObject *t = PyTuple_New(n);
    int ok = t != NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = va_arg(ap, PyObject *);
        if (item == NULL)
            ok = 0;
        if (ok)
            PyTuple_SET_ITEM(t, i, item);
        else
            Py_XDECREF(item);
    }
    va_end(ap);
    if (!ok) {
        Py_XDECREF(t);
        return NULL;
    }
    return t;
}

static PyObject *
lk_target(lookup_t *lk)
{
    if (lk->target_len < 0)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefaultAndSize(lk->target, lk->target_len);
}

enum { LK_LIVE, LK_STAT, LK_SEGMENT };

/* Every lookup: convert the paths, then open_live's system calls and the
 * step ``what`` adds, without the GIL.  -1: lk_end(c, NULL) raises. */
static int
lk_run(lk_call_t *c, PyObject *dir, PyObject *prefix, int what, const char *attr,
       int data_flags)
{
    if (lk_begin(c, dir, prefix) < 0)
        return -1;
    lookup_t *lk = c->lk;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = lk_open_live(lk, PyBytes_AS_STRING(c->dir), lk_pre(c));
    if (rc == 0 && what == LK_STAT)
        rc = lk_stat_attr(lk, attr);
    if (rc == 0 && what == LK_SEGMENT)
        rc = lk_open_data(lk, data_flags);
    Py_END_ALLOW_THREADS
    return rc;
}

PyDoc_STRVAR(open_live_doc,
"open_live(dirpath, names_prefix) -> (fd, index, target)\n\n"
"open(dirpath, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC), readlinkat(fd,\n"
"\"index\"), then readlink(names_prefix + index); names_prefix None skips the\n"
"readlink (target is then None).  An index that is empty, '.', '..' or holds\n"
"a '/' is ENOENT.  The caller owns fd; on error nothing stays open.");

static PyObject *
vaspace_open_live(PyObject *self, PyObject *args)
{
    PyObject *dir, *prefix;
    lk_call_t c;
    if (!PyArg_ParseTuple(args, "OO", &dir, &prefix))
        return NULL;
    if (lk_run(&c, dir, prefix, LK_LIVE, NULL, 0) < 0)
        return lk_end(&c, NULL);
    lookup_t *lk = c.lk;
    PyObject *res = lk_tuple(3, PyLong_FromLong(lk->dfd),
                             PyUnicode_DecodeFSDefaultAndSize(lk->index, lk->index_len),
                             lk_target(lk));
    if (res == NULL)
        close(lk->dfd);
    return lk_end(&c, res);
}

PyDoc_STRVAR(stat_live_doc,
"stat_live(dirpath, names_prefix, attr_file) -> (index, target, st_mode, st_uid, st_gid)\n\n"
"open_live's system calls, then fstatat(fd, attr_file, AT_SYMLINK_NOFOLLOW),\n"
"then close(fd): an object's attributes in one call, nothing left open.");

static PyObject *
vaspace_stat_live(PyObject *self, PyObject *args)
{
    PyObject *dir, *prefix, *attr, *res = NULL;
    lk_call_t c;
    if (!PyArg_ParseTuple(args, "OOO&", &dir, &prefix, PyUnicode_FSConverter, &attr))
        return NULL;
    if (lk_run(&c, dir, prefix, LK_STAT, PyBytes_AS_STRING(attr), 0) == 0) {
        lookup_t *lk = c.lk;
        res = lk_tuple(5, PyUnicode_DecodeFSDefaultAndSize(lk->index, lk->index_len),
                       lk_target(lk), PyLong_FromUnsignedLong(lk->st.st_mode),
                       PyLong_FromUnsignedLong(lk->st.st_uid),
                       PyLong_FromUnsignedLong(lk->st.st_gid));
    }
    res = lk_end(&c, res); /* raises first: the error's file name may point into attr */
    Py_DECREF(attr);
    return res;
}

PyDoc_STRVAR(open_segment_doc,
"open_segment(dirpath, names_prefix, data_flags) -> (dirfd, index, target, region,\n"
"                                                   data_fd, st_size, st_nlink, st_mode)\n\n"
"open_live's system calls, then in the directory: open \"region\"\n"
"(O_RDONLY|O_NONBLOCK|O_NOFOLLOW), fstat it (EIO unless a regular file),\n"
"read at most 64 bytes (region: bytes; a valid one has at most 34), close\n"
"it; open \"data\" with data_flags (O_RDONLY or O_RDWR, plus\n"
"O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC) and fstat it\n"
"(EIO unless a regular file).  data_flags -1 reads the region only (data_fd\n"
"is then -1 and the st_ fields 0).  The caller owns the descriptors; on error\n"
"nothing stays open.");

static PyObject *
vaspace_open_segment(PyObject *self, PyObject *args)
{
    PyObject *dir, *prefix;
    int data_flags;
    lk_call_t c;
    if (!PyArg_ParseTuple(args, "OOi", &dir, &prefix, &data_flags))
        return NULL;
    if (data_flags != O_RDONLY && data_flags != O_RDWR && data_flags != -1) {
        PyErr_SetString(PyExc_ValueError, "open_segment: data_flags must be O_RDONLY, O_RDWR "
                        "or -1");
        return NULL;
    }
    if (lk_run(&c, dir, prefix, LK_SEGMENT, NULL, data_flags) < 0)
        return lk_end(&c, NULL);
    lookup_t *lk = c.lk;
    PyObject *res = lk_tuple(8, PyLong_FromLong(lk->dfd),
                             PyUnicode_DecodeFSDefaultAndSize(lk->index, lk->index_len),
                             lk_target(lk),
                             PyBytes_FromStringAndSize(lk->region, lk->region_len),
                             PyLong_FromLong(lk->ffd),
                             PyLong_FromLongLong(lk->ffd < 0 ? 0 : lk->st.st_size),
                             PyLong_FromUnsignedLongLong(lk->ffd < 0 ? 0 : lk->st.st_nlink),
                             PyLong_FromUnsignedLong(lk->ffd < 0 ? 0 : lk->st.st_mode));
    if (res == NULL) {
        if (lk->ffd >= 0)
            close(lk->ffd);
        close(lk->dfd);
    }
    return lk_end(&c, res);
}

PyDoc_STRVAR(open_regular_doc,
"open_regular(dirfd, name, access) -> (fd, st_mode, st_uid, st_gid)\n\n"
"openat(dirfd, name, access|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC) and fstat it:\n"
"EIO (filename name) unless it is a regular file.  access is O_RDONLY,\n"
"O_WRONLY or O_RDWR.  A VAS's lock file for the sharing lock: a link, a FIFO\n"
"or a device is refused without blocking.  The caller owns fd.");

static PyObject *
vaspace_open_regular(PyObject *self, PyObject *args)
{
    int dfd, access;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "iO&i", &dfd, PyUnicode_FSConverter, &name, &access))
        return NULL;
    if (access != O_RDONLY && access != O_WRONLY && access != O_RDWR) {
        Py_DECREF(name);
        PyErr_SetString(PyExc_ValueError, "open_regular: access must be O_RDONLY, O_WRONLY "
                        "or O_RDWR");
        return NULL;
    }
    struct stat st;
    int fd, err = 0;
    Py_BEGIN_ALLOW_THREADS
    fd = LK_RETRY(openat(dfd, PyBytes_AS_STRING(name),
                         access | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd < 0) {
        err = errno;
    } else {
        if (LK_RETRY(fstat(fd, &st)) < 0)
            err = errno;
        else if (!S_ISREG(st.st_mode))
            err = EIO; /* a FIFO, a device, a directory: never read, never locked */
        if (err) {
            close(fd);
            fd = -1;
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (fd < 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, PyBytes_AS_STRING(name));
    } else {
        res = lk_tuple(4, PyLong_FromLong(fd), PyLong_FromUnsignedLong(st.st_mode),
                       PyLong_FromUnsignedLong(st.st_uid), PyLong_FromUnsignedLong(st.st_gid));
        if (res == NULL)
            close(fd);
    }
    Py_DECREF(name);
    return res;
}

PyDoc_STRVAR(same_entry_doc,
"same_entry(link_path, dir_path, dirfd) -> (target, same)\n\n"
"readlink(link_path), lstat(dir_path) and fstat(dirfd): the name link's\n"
"target (an id: a target of 32 bytes or more is ENAMETOOLONG), and whether\n"
"the entry dir_path is the directory open at dirfd (same device and inode):\n"
"the recheck a change makes under its lock (the object is still the one\n"
"pinned).  OSError (filename the path) if a step fails.");

static PyObject *
vaspace_same_entry(PyObject *self, PyObject *args)
{
    PyObject *link, *dir;
    int dfd;
    if (!PyArg_ParseTuple(args, "O&O&i", PyUnicode_FSConverter, &link, PyUnicode_FSConverter,
                          &dir, &dfd))
        return NULL;
    char target[LK_TARGET];
    struct stat now, pinned;
    ssize_t n;
    int err = 0;
    PyObject *where = NULL;
    Py_BEGIN_ALLOW_THREADS
    n = LK_RETRY(readlink(PyBytes_AS_STRING(link), target, sizeof(target)));
    if (n < 0 || n == (ssize_t)sizeof(target)) {
        err = n < 0 ? errno : ENAMETOOLONG;
        where = link;
    } else if (LK_RETRY(lstat(PyBytes_AS_STRING(dir), &now)) < 0 ||
               LK_RETRY(fstat(dfd, &pinned)) < 0) {
        err = errno;
        where = dir;
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, PyBytes_AS_STRING(where));
    } else {
        int same = now.st_dev == pinned.st_dev && now.st_ino == pinned.st_ino;
        res = lk_tuple(2, PyUnicode_DecodeFSDefaultAndSize(target, n), PyBool_FromLong(same));
    }
    Py_DECREF(link);
    Py_DECREF(dir);
    return res;
}

PyDoc_STRVAR(start_time_doc,
"start_time(pid) -> int | None\n\n"
"Field 22 of /proc/<pid>/stat (the process's start time in clock ticks since\n"
"boot), or None when no such process exists (open or read gives ENOENT or\n"
"ESRCH).  Three system calls (open, read, close) and the parse in C: a fresh\n"
"interpreter's first int(bytes), rindex and split cost it about 30 us.\n"
"The command name may hold spaces and ')': the fields are counted after the\n"
"last ')'.");

static PyObject *
vaspace_start_time(PyObject *self, PyObject *arg)
{
    long pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred())
        return NULL;
    if (pid <= 0 || pid > INT_MAX) /* no /proc/<pid> for these: the process does not exist */
        Py_RETURN_NONE;
    char path[32];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    /* One line of 52 fields after a comm of at most 64 bytes: far under 1 KiB. */
    char buf[1024];
    ssize_t n;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        n = -1;
    } else {
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
            err = errno;
        close(fd);
    }
    Py_END_ALLOW_THREADS
    if (n < 0) {
        if (err == ENOENT || err == ESRCH) /* gone (or exited between open and read) */
            Py_RETURN_NONE;
        return vaspace_oserror(err, "open /proc/<pid>/stat");
    }
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    /* After ')': " S ppid ..." -- field 3 onwards; field 22 is the 20th of them. */
    for (int field = 3; p != NULL && field <= 22; field++) {
        while (*++p == ' ')
            ;
        if (field == 22)
            break;
        p = strchr(p, ' ');
    }
    if (p == NULL || *p < '0' || *p > '9') {
        set_errorf(PyExc_ValueError, "start_time: %s has no field 22", path);
        return NULL;
    }
    unsigned long long ticks = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        ticks = ticks * 10 + (unsigned long long)(*p - '0');
    return PyLong_FromUnsignedLongLong(ticks);
}

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef lookups_methods[] = {
    {"dir_entries", vaspace_dir_entries, METH_O, dir_entries_doc},
    {"open_live", vaspace_open_live, METH_VARARGS, open_live_doc},
    {"stat_live", vaspace_stat_live, METH_VARARGS, stat_live_doc},
    {"open_segment", vaspace_open_segment, METH_VARARGS, open_segment_doc},
    {"open_regular", vaspace_open_regular, METH_VARARGS, open_regular_doc},
    {"same_entry", vaspace_same_entry, METH_VARARGS, same_entry_doc},
    {"start_time", vaspace_start_time, METH_O, start_time_doc},
    {NULL, NULL, 0, NULL},
};
