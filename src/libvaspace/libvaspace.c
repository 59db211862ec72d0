/*
 * libvaspace.so (also installed as libmvas.so): the RFC's calls for C
 * programs, answered by vaspace's Python implementation.
 *
 * Why embed (docs/capi.md): the registry protocol, its security checks and
 * the switch planner exist once, in Python.  This file only carries calls
 * across: it starts an interpreter on the first call (or uses the host's
 * when the process is already Python), imports the vaspace this library was
 * installed with, and calls vaspace.api.  vas_switch goes straight to
 * _core.vas_switch, the C cached-plan fast path.
 *
 * Threads: every call takes the GIL and releases it before returning, so
 * any thread may call at any time.  A thread that Python did not create gets
 * one thread state for its whole life ("pinned"), because the active VAS
 * and its guard live in that thread state's thread-locals; a pthread key
 * destructor drops it when the thread exits (which leaves its VAS).
 *
 * Errors: an OSError becomes -1 with errno = its errno; MemoryError is
 * ENOMEM; anything else (a bug, a failed start-up) is EIO.  The message is
 * kept per thread for vaspace_last_error().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vaspace.h"

#define API __attribute__((visibility("default")))
#define STR_(x) #x
#define STR(x) STR_(x)
#define PY_VERSION_MM STR(PY_MAJOR_VERSION) "." STR(PY_MINOR_VERSION)

/* Sticky GIL (see "the GIL" below, and docs/capi.md) relies on 3.11's global
 * current thread state: that one behaviour is not in the public API's contract. */
#if PY_VERSION_HEX < 0x030C0000
#define STICKY_GIL_POSSIBLE 1
#else
#define STICKY_GIL_POSSIBLE 0
#endif

#ifndef VASPACE_BUILD_EXECUTABLE
#define VASPACE_BUILD_EXECUTABLE ""
#endif

/* The api functions, looked up once. */
enum {
    F_VAS_CREATE, F_VAS_DELETE, F_VAS_FIND, F_VAS_ATTACH, F_VAS_DETACH, F_VAS_SWITCH,
    F_ACTIVE_VAS, F_VAS_GETATTR, F_VAS_SETATTR, F_SEG_CREATE, F_SEG_CREATE_SZ, F_SEG_DELETE,
    F_SEG_FIND, F_SEG_ATTACH, F_SEG_DETACH, F_SEG_GETATTR, F_SEG_SETATTR, F_ATTR,
    F_SEG_CLONE, F_VAS_CLONE, F_VAS_MMAP, F_VAS_MUNMAP, F_COUNT
};
static const char *const fn_names[F_COUNT] = {
    "vas_create", "vas_delete", "vas_find", "vas_attach", "vas_detach", "vas_switch",
    "active_vas", "vas_getattr", "vas_setattr", "vas_seg_create", "segment_create_sz",
    "vas_seg_delete", "vas_seg_find", "vas_seg_attach", "vas_seg_detach", "vas_seg_getattr",
    "vas_seg_setattr", "Attr",
    "vas_seg_clone", "vas_clone", "vas_mmap", "vas_munmap",
};
static PyObject *fns[F_COUNT];

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_errno;           /* 0 once vaspace is imported; kept for good otherwise */
static char init_message[1024];
static pthread_key_t pin_key;
static __thread PyThreadState *pinned __attribute__((tls_model("initial-exec")));
static __thread char last_error[1024];

static void set_message(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_message(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

API const char *
vaspace_last_error(void)
{
    return last_error;
}

/* ------------------------------------------------------------ start-up */

/* The package directory this library lives in (symlinks resolved). */
static int
package_dir(char *out, size_t size)
{
    Dl_info info;
    char real[PATH_MAX];
    if (!dladdr((void *)&package_dir, &info) || info.dli_fname == NULL ||
        realpath(info.dli_fname, real) == NULL)
        return -1;
    char *slash = strrchr(real, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    if ((size_t)snprintf(out, size, "%s", real) >= size)
        return -1;
    return 0;
}

static int
is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * The interpreter to run: the one whose site-packages holds the package
 * (<prefix>/lib/pythonX.Y/site-packages/vaspace: <prefix>/bin/pythonX.Y,
 * which Python's own start-up turns into the right venv or base prefix),
 * else the interpreter that built the library (an in-place or editable
 * build, where the package is not under a site-packages).
 */
static int
find_executable(const char *pkgdir, char *out, size_t size)
{
    /* pkgdir = <prefix>/lib/pythonX.Y/site-packages/vaspace: strip four parts. */
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s", pkgdir);
    const char *site = NULL;
    for (int i = 0; i < 4; i++) {
        char *slash = strrchr(prefix, '/');
        if (slash == NULL || slash == prefix) {
            site = NULL;
            break;
        }
        if (i == 1)
            site = slash + 1;
        if (i == 1 && strcmp(site, "site-packages") != 0 && strcmp(site, "dist-packages") != 0) {
            site = NULL;
            break;
        }
        *slash = '\0';
    }
    if (site != NULL) {
        static const char *const names[] = {"python" PY_VERSION_MM, "python3"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            int n = snprintf(out, size, "%s/bin/%s", prefix, names[i]);
            if (n > 0 && (size_t)n < size && is_file(out))
                return 0;
        }
    }
    if (VASPACE_BUILD_EXECUTABLE[0] && is_file(VASPACE_BUILD_EXECUTABLE)) {
        snprintf(out, size, "%s", VASPACE_BUILD_EXECUTABLE);
        return 0;
    }
    return -1;
}

static void before_fork(void);
static void after_fork_parent(void);
static void after_fork_child(void);
static void unpin(void *tstate);
static void release_pinned(void);
static atomic_int sticky;

static int
start_interpreter(const char *pkgdir)
{
    char exe[PATH_MAX];
    if (find_executable(pkgdir, exe, sizeof(exe)) < 0) {
        set_message(init_message, sizeof(init_message),
                    "vaspace: no Python interpreter found for the package in %s", pkgdir);
        return -1;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;  /* the host keeps SIGINT and friends */
    config.parse_argv = 0;
    config.use_environment = 0;          /* PYTHONPATH/PYTHONHOME belong to other Pythons */
    config.user_site_directory = 0;
    config.safe_path = 1;
    PyStatus st = PyConfig_SetBytesString(&config, &config.executable, exe);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&config, &config.program_name, exe);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        set_message(init_message, sizeof(init_message),
                    "vaspace: starting the interpreter %s failed: %s", exe,
                    st.err_msg ? st.err_msg : "?");
        return -1;
    }
    return 0;
}

/* Import vaspace from the directory above pkgdir (the vaspace this library
 * belongs to), unless the process has one already; cache the functions. */
static int
import_vaspace(const char *pkgdir)
{
    PyObject *modules = PyImport_GetModuleDict();
    PyObject *pkg = PyDict_GetItemString(modules, "vaspace");  /* borrowed */
    Py_XINCREF(pkg);
    if (pkg == NULL) {
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", pkgdir);
        *strrchr(parent, '/') = '\0';
        PyObject *path = PySys_GetObject("path");  /* borrowed */
        PyObject *entry = PyUnicode_DecodeFSDefault(parent);
        if (path == NULL || entry == NULL || PyList_Insert(path, 0, entry) < 0) {
            Py_XDECREF(entry);
            return -1;
        }
        pkg = PyImport_ImportModule("vaspace");
        /* Our entry goes again; vaspace's subpackages import through its __path__. */
        Py_ssize_t i = PySequence_Index(path, entry);
        if (i >= 0)
            PySequence_DelItem(path, i);
        else
            PyErr_Clear();
        Py_DECREF(entry);
        if (pkg == NULL)
            return -1;
    }
    PyObject *api = PyObject_GetAttrString(pkg, "api");
    int rc = api ? 0 : -1;
    for (int i = 0; rc == 0 && i < F_COUNT; i++) {
        fns[i] = PyObject_GetAttrString(i == F_ATTR ? pkg : api, fn_names[i]);
        if (fns[i] == NULL)
            rc = -1;
    }
    Py_XDECREF(api);
    Py_DECREF(pkg);
    return rc;
}

static void
save_python_error(char *buf, size_t size)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *text = s ? PyUnicode_AsUTF8(s) : NULL;
    const char *tname = type ? ((PyTypeObject *)type)->tp_name : "error";
    set_message(buf, size, "%s: %s", tname, text ? text : "?");
    PyErr_Clear();
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

static void
initialize(void)
{
    char pkgdir[PATH_MAX];
    if (package_dir(pkgdir, sizeof(pkgdir)) < 0) {
        set_message(init_message, sizeof(init_message),
                    "vaspace: cannot find where libvaspace.so lives");
        init_errno = EIO;
        return;
    }
    if (pthread_key_create(&pin_key, unpin) != 0) {
        set_message(init_message, sizeof(init_message), "vaspace: pthread_key_create failed");
        init_errno = EIO;
        return;
    }
    int embedded = !Py_IsInitialized();
    if (embedded && start_interpreter(pkgdir) < 0) {
        init_errno = EIO;
        return;
    }
    /* Embedded: this thread holds the GIL and owns the main thread state.
     * Hosted: take the GIL the host's way. */
    PyGILState_STATE gil = embedded ? PyGILState_LOCKED : PyGILState_Ensure();
    if (import_vaspace(pkgdir) < 0) {
        save_python_error(init_message, sizeof(init_message));
        init_errno = EIO;
    }
    if (embedded) {
        /* The host process forks with plain fork(): keep Python's fork
         * protocol (locks, os.register_at_fork hooks).  A Python host runs
         * it itself in os.fork. */
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
        pinned = PyThreadState_Get();
        atomic_store(&sticky, STICKY_GIL_POSSIBLE);
        release_pinned();  /* let other threads in */
    } else {
        PyGILState_Release(gil);
    }
}

/* ------------------------------------------------------------ the GIL */

/*
 * Every call holds the GIL while it runs Python.  Taking and dropping it
 * costs about 100 ns, twice a vas_switch's own cost, so while only one
 * thread has ever called in (the common C program), an embedding process
 * keeps the GIL "sticky": the thread leaving a call marks itself
 * idle_owner and keeps the GIL; its next call takes it back with one
 * compare-and-swap.  The first call from a second thread ends sticky mode
 * for good (a thread waiting for the GIL inside Python's own hand-over
 * would not be seen), and takes the GIL from an idle owner by releasing it
 * on the owner's behalf (CPython 3.11 keeps the current thread state in one
 * global, so any thread may release it: the one use beyond the public API's
 * contract, docs/capi.md); an owner leaving a call while others wait
 * (waiters) releases as usual.  Sticky mode needs every GIL user to be a
 * caller of this library: so only when we started the interpreter, and a
 * call ends it as it leaves if the interpreter has any other thread state
 * (a Python thread); never in a Python host, and not from 3.12 on (the
 * current thread state is per thread there).
 */
static atomic_int sticky;
static _Atomic(PyThreadState *) idle_owner;
static atomic_int waiters;
static __thread int call_depth __attribute__((tls_model("initial-exec")));

/* The pinned thread state takes the GIL, by the protocol. */
static void
acquire_pinned(void)
{
    if (!atomic_load(&sticky) && atomic_load(&idle_owner) == NULL) {
        /* Nobody idles, and nobody will (see release_pinned's re-check). */
        PyEval_RestoreThread(pinned);
        return;
    }
    PyThreadState *mine = pinned;
    if (atomic_compare_exchange_strong(&idle_owner, &mine, NULL))
        return;  /* still ours since the last call */
    atomic_fetch_add(&waiters, 1);
    for (;;) {
        PyThreadState *cur = atomic_load(&idle_owner);
        if (cur == NULL)
            break;  /* a busy holder will see waiters and release */
        if (atomic_compare_exchange_strong(&idle_owner, &cur, NULL)) {
            PyEval_SaveThread();  /* cur is idle: release for it */
            break;
        }
    }
    PyEval_RestoreThread(pinned);
    atomic_fetch_sub(&waiters, 1);
}

/* True if the interpreter has a thread state besides the caller's: a Python
 * thread started by code a call ran.  Called with the GIL held. */
static int
other_thread_states(void)
{
    PyThreadState *t = PyInterpreterState_ThreadHead(PyInterpreterState_Main());
    return t != NULL && (t != pinned || PyThreadState_Next(t) != NULL);
}

static void
release_pinned(void)
{
    if (atomic_load(&sticky) && other_thread_states()) {
        /* That thread needs the GIL between our calls, when nothing of ours
         * runs the eval loop that would hand it over: stop idling. */
        atomic_store(&sticky, 0);
    }
    if (atomic_load(&sticky)) {
        atomic_store(&idle_owner, pinned);
        /* Sticky again after the store: a thread that ends sticky mode
         * stores 0 before it looks for an idle owner, so it finds us. */
        if (atomic_load(&waiters) == 0 && atomic_load(&sticky))
            return;
        PyThreadState *mine = pinned;
        if (!atomic_compare_exchange_strong(&idle_owner, &mine, NULL))
            return;  /* a waiter took it and releases it for us */
    }
    PyEval_SaveThread();
}

/* How a call got the GIL, so that it gives it back the same way. */
typedef struct {
    enum { GIL_HELD_ALREADY, GIL_PINNED, GIL_STATE } how;
    PyGILState_STATE state;
} gil_t;

/* Take the GIL for a call; -1 (errno set) if vaspace could not start.
 * A pinned thread (the embedding main thread, or a thread Python never
 * saw) swaps its own thread state in; a Python thread calling from C goes
 * through PyGILState (it may hold the GIL already). */
static int
enter(gil_t *gil)
{
    pthread_once(&init_once, initialize);
    if (init_errno) {
        snprintf(last_error, sizeof(last_error), "%s", init_message);
        errno = init_errno;
        return -1;
    }
    if (call_depth++ > 0) {
        gil->how = GIL_HELD_ALREADY;  /* called back from Python code in a call */
        return 0;
    }
    if (pinned == NULL && PyGILState_GetThisThreadState() == NULL) {
        /* A thread Python does not know: a thread state for its whole life
         * (made without the GIL; PyThreadState_New binds it to this thread). */
        pinned = PyThreadState_New(PyInterpreterState_Main());
        pthread_setspecific(pin_key, pinned);
        /* Two threads call in: Python's own GIL hand-over (a thread waiting
         * inside a call) knows nothing of idle owners, so stop idling. */
        atomic_store(&sticky, 0);
    }
    if (pinned != NULL) {
        gil->how = GIL_PINNED;
        acquire_pinned();
    } else {
        gil->how = GIL_STATE;
        gil->state = PyGILState_Ensure();
    }
    return 0;
}

static void
give_back(gil_t gil)
{
    call_depth--;
    if (gil.how == GIL_PINNED)
        release_pinned();
    else if (gil.how == GIL_STATE)
        PyGILState_Release(gil.state);
}

/* fork() from C: Python's fork protocol (its locks, os.register_at_fork
 * hooks; vaspace's own hook makes the child start in the original address
 * space with no attachments).  A Python host runs it itself in os.fork. */
static __thread gil_t fork_gil;

static void
before_fork(void)
{
    enter(&fork_gil);
    PyOS_BeforeFork();
}

static void
after_fork_parent(void)
{
    PyOS_AfterFork_Parent();
    give_back(fork_gil);
}

static void
after_fork_child(void)
{
    PyOS_AfterFork_Child();
    /* The other threads are gone: nobody waits, nobody idles. */
    atomic_store(&idle_owner, NULL);
    atomic_store(&waiters, 0);
    give_back(fork_gil);
}

static void
unpin(void *tstate)
{
    /* The thread exits: clearing its thread state drops its thread-locals,
     * whose guard leaves the thread's VAS; then the state is deleted (which
     * releases the GIL).  Not PyGILState_Release: glibc has already emptied
     * Python's own TSS slot for this thread when key destructors run. */
    /* Py_IsInitialized() turns false as finalization starts (3.11's
     * Py_FinalizeEx clears it with the finalizing flag); the public stand-in
     * for _Py_IsFinalizing, public only from 3.13 as Py_IsFinalizing. */
    if (!Py_IsInitialized())
        return;
    pinned = tstate;
    acquire_pinned();
    PyThreadState_Clear(pinned);
    PyThreadState_DeleteCurrent();
    pinned = NULL;
}

/* ------------------------------------------------------------ calls */

/* Finish a call whose result is r (NULL: an exception is set).  Returns
 * r's int value (0 for None), or -1 with errno set. */
static long
leave(gil_t gil, PyObject *r)
{
    long value = 0;
    int err = 0;
    if (r == NULL) {
        err = EIO;
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            PyErr_NormalizeException(&type, &exc, &tb);
            PyObject *e = exc ? PyObject_GetAttrString(exc, "errno") : NULL;
            if (e != NULL && PyLong_Check(e)) {
                long v = PyLong_AsLong(e);
                if (v > 0 && v < 4096)
                    err = (int)v;
            }
            Py_XDECREF(e);
            PyErr_Restore(type, exc, tb);
        } else if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            err = ENOMEM;
        }
        save_python_error(last_error, sizeof(last_error));
    } else {
        if (r != Py_None) {
            value = PyLong_AsLong(r);
            if (value == -1 && PyErr_Occurred()) {
                save_python_error(last_error, sizeof(last_error));
                err = EIO;
            }
        }
        Py_DECREF(r);
    }
    give_back(gil);
    if (err) {
        errno = err;
        return -1;
    }
    return value;
}

static int
bad_arg(const char *what)
{
    snprintf(last_error, sizeof(last_error), "OSError: [Errno %d] %s: %s", EINVAL,
             strerror(EINVAL), what);
    errno = EINVAL;
    return -1;
}

/* f(name, *ints): the calls that take a name. */
static long
call_named(int f, const char *name, const char *fmt, ...)
{
    if (name == NULL)
        return bad_arg("NULL name");
    gil_t gil;
    if (enter(&gil) < 0)
        return -1;
    PyObject *r = NULL;
    PyObject *pyname = PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "surrogateescape");
    if (pyname != NULL) {
        va_list ap;
        va_start(ap, fmt);
        PyObject *rest = Py_VaBuildValue(fmt, ap);
        va_end(ap);
        if (rest != NULL && PyTuple_Check(rest)) {
            Py_ssize_t n = PyTuple_GET_SIZE(rest);
            PyObject *args = PyTuple_New(n + 1);
            if (args != NULL) {
                PyTuple_SET_ITEM(args, 0, Py_NewRef(pyname));
                for (Py_ssize_t i = 0; i < n; i++)
                    PyTuple_SET_ITEM(args, i + 1, Py_NewRef(PyTuple_GET_ITEM(rest, i)));
                r = PyObject_Call(fns[f], args, NULL);
                Py_DECREF(args);
            }
        }
        Py_XDECREF(rest);
        Py_DECREF(pyname);
    }
    return leave(gil, r);
}

/* f(*ints): the calls that take ids. */
static long
call_ids(int f, const char *fmt, ...)
{
    gil_t gil;
    if (enter(&gil) < 0)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    PyObject *args = Py_VaBuildValue(fmt, ap);
    va_end(ap);
    PyObject *r = args ? PyObject_Call(fns[f], args, NULL) : NULL;
    Py_XDECREF(args);
    return leave(gil, r);
}

static int
get_attr(int f, int id, unsigned int *mode, unsigned int *user, unsigned int *group)
{
    gil_t gil;
    if (enter(&gil) < 0)
        return -1;
    PyObject *t = PyObject_CallFunction(fns[f], "i", id);
    PyObject *r = NULL;
    if (t != NULL) {
        unsigned long v[3];
        int ok = PyTuple_Check(t) && PyTuple_GET_SIZE(t) == 3;
        for (int i = 0; ok && i < 3; i++) {
            v[i] = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(t, i));
            ok = !PyErr_Occurred();
        }
        if (ok) {
            *mode = (unsigned int)v[0];
            *user = (unsigned int)v[1];
            *group = (unsigned int)v[2];
            r = Py_NewRef(Py_None);
        } else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "getattr did not return (mode, user, group)");
        }
        Py_DECREF(t);
    }
    return (int)leave(gil, r);
}

static int
set_attr(int f, int id, unsigned int mode, unsigned int user, unsigned int group)
{
    gil_t gil;
    if (enter(&gil) < 0)
        return -1;
    PyObject *attr = PyObject_CallFunction(fns[F_ATTR], "III", mode, user, group);
    PyObject *r = attr ? PyObject_CallFunction(fns[f], "iO", id, attr) : NULL;
    Py_XDECREF(attr);
    return (int)leave(gil, r);
}

/* ------------------------------------------------------------ VASes */

API vasid_t
vas_create(const char *name, mode_t mode)
{
    return (vasid_t)call_named(F_VAS_CREATE, name, "(I)", (unsigned int)mode);
}

API int
vas_delete(vasid_t vid)
{
    return (int)call_ids(F_VAS_DELETE, "(i)", vid);
}

API vasid_t
vas_find(const char *name)
{
    return (vasid_t)call_named(F_VAS_FIND, name, "()");
}

API int
vas_attach(pid_t pid, vasid_t vid, int type)
{
    /* Only the access mode counts: programs pass S_IRWXU (0700), read-only. */
    return (int)call_ids(F_VAS_ATTACH, "(iii)", (int)pid, vid, type & O_ACCMODE);
}

API int
vas_detach(pid_t pid, vasid_t vid)
{
    return (int)call_ids(F_VAS_DETACH, "(ii)", (int)pid, vid);
}

API int
vas_switch(vasid_t vid)
{
    /* The hot path: one call of _core.vas_switch, which runs a cached plan
     * in C and only enters Python when it must plan. */
    gil_t gil;
    if (enter(&gil) < 0)
        return -1;
    PyObject *arg = PyLong_FromLong(vid);
    PyObject *r = arg ? PyObject_CallOneArg(fns[F_VAS_SWITCH], arg) : NULL;
    Py_XDECREF(arg);
    return (int)leave(gil, r);
}

API vasid_t
active_vas(void)
{
    /* Never fails: a process whose interpreter never started is in the
     * original address space. */
    int saved = errno;
    long v = call_ids(F_ACTIVE_VAS, "()");
    errno = saved;
    return v < 0 ? 0 : (vasid_t)v;
}

API int
vas_getattr(vasid_t vid, struct vas_attr *attr)
{
    if (attr == NULL)
        return bad_arg("NULL attr");
    return get_attr(F_VAS_GETATTR, vid, &attr->mode, &attr->user, &attr->group);
}

API int
vas_setattr(vasid_t vid, const struct vas_attr *attr)
{
    if (attr == NULL)
        return bad_arg("NULL attr");
    return set_attr(F_VAS_SETATTR, vid, attr->mode, attr->user, attr->group);
}

API vasid_t
vas_fork(pid_t pid)
{
    snprintf(last_error, sizeof(last_error), "vas_fork is a libmvas extra, not in the RFC");
    errno = ENOSYS;
    return -1;
}

API int
vas_exec(pid_t pid, vasid_t vid)
{
    snprintf(last_error, sizeof(last_error), "vas_exec is a libmvas extra, not in the RFC");
    errno = ENOSYS;
    return -1;
}

/* ------------------------------------------------------------ segments */

API segid_t
vas_seg_create(const char *name, unsigned long start, unsigned long end, mode_t mode)
{
    return (segid_t)call_named(F_SEG_CREATE, name, "(kkI)", start, end, (unsigned int)mode);
}

API segid_t
segment_create_sz(const char *name, unsigned long start, unsigned long size, mode_t mode)
{
    return (segid_t)call_named(F_SEG_CREATE_SZ, name, "(kkI)", start, size, (unsigned int)mode);
}

API int
vas_seg_delete(segid_t sid)
{
    return (int)call_ids(F_SEG_DELETE, "(i)", sid);
}

API segid_t
vas_seg_find(const char *name)
{
    return (segid_t)call_named(F_SEG_FIND, name, "()");
}

API int
vas_seg_attach(vasid_t vid, segid_t sid, int type)
{
    return (int)call_ids(F_SEG_ATTACH, "(iii)", vid, sid, type & O_ACCMODE);
}

API int
vas_seg_detach(vasid_t vid, segid_t sid)
{
    return (int)call_ids(F_SEG_DETACH, "(ii)", vid, sid);
}

API int
vas_seg_getattr(segid_t sid, struct vas_seg_attr *attr)
{
    if (attr == NULL)
        return bad_arg("NULL attr");
    return get_attr(F_SEG_GETATTR, sid, &attr->mode, &attr->user, &attr->group);
}

API int
vas_seg_setattr(segid_t sid, const struct vas_seg_attr *attr)
{
    if (attr == NULL)
        return bad_arg("NULL attr");
    return set_attr(F_SEG_SETATTR, sid, attr->mode, attr->user, attr->group);
}

/* ------------------------------------------------------------ issue 16 */

/* f(id, name): the clones, whose name comes second. */
static long
call_id_name(int f, int id, const char *name)
{
    if (name == NULL)
        return bad_arg("NULL name");
    gil_t gil;
    if (enter(&gil) < 0)
        return -1;
    PyObject *pyname = PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "surrogateescape");
    PyObject *r = pyname ? PyObject_CallFunction(fns[f], "iO", id, pyname) : NULL;
    Py_XDECREF(pyname);
    return leave(gil, r);
}

API segid_t
vas_seg_clone(segid_t sid, const char *name)
{
    return (segid_t)call_id_name(F_SEG_CLONE, sid, name);
}

API vasid_t
vas_clone(vasid_t vid, const char *name)
{
    return (vasid_t)call_id_name(F_VAS_CLONE, vid, name);
}

API void *
vas_mmap(vasid_t vid, void *addr, size_t length, int prot)
{
    /* Addresses in the window are below 2**47: a long holds them, and -1 is
     * the failure, as mmap's MAP_FAILED. */
    long r = call_ids(F_VAS_MMAP, "(ikki)", vid, (unsigned long)addr, (unsigned long)length,
                      prot);
    return r == -1 ? MAP_FAILED : (void *)r;
}

API int
vas_munmap(vasid_t vid, void *addr, size_t length)
{
    return (int)call_ids(F_VAS_MUNMAP, "(ikk)", vid, (unsigned long)addr, (unsigned long)length);
}

/* libmvas's names for the same functions. */
API segid_t segment_create(const char *, unsigned long, unsigned long, mode_t)
    __attribute__((alias("vas_seg_create")));
API int segment_delete(segid_t) __attribute__((alias("vas_seg_delete")));
API segid_t segment_find(const char *) __attribute__((alias("vas_seg_find")));
API int segment_attach(vasid_t, segid_t, int) __attribute__((alias("vas_seg_attach")));
API int segment_detach(vasid_t, segid_t) __attribute__((alias("vas_seg_detach")));
API int segment_getattr(segid_t, struct vas_seg_attr *) __attribute__((alias("vas_seg_getattr")));
API int segment_setattr(segid_t, const struct vas_seg_attr *)
    __attribute__((alias("vas_seg_setattr")));
