/*
 * core/errors.c: the single place that turns errno into OSError, and the other
 * messages more than one file raises (psutil's errors.c).
 */
#include "core.h"

/* The single place that turns errno into OSError (psutil's errors.c). */
PyObject *
vaspace_oserror(int err, const char *syscall)
{
    errno = err;
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, syscall);
}

/* PyErr_Format knows neither %#lx nor %zu everywhere: format with libc,
 * decode leniently (a name cut mid-character must not raise instead). */
void
set_errorf(PyObject *type, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    PyObject *msg = PyUnicode_DecodeUTF8(buf, n, "replace");
    if (msg != NULL) {
        PyErr_SetObject(type, msg);
        Py_DECREF(msg);
    }
}

/* A rollback step failed: say loudly that the process state is unknown
 * (ENOTRECOVERABLE), naming the first failure and the failed undo. */
PyObject *
unknown_state(int err, int undo_err, const char *what)
{
    PyObject *msg = PyUnicode_FromFormat(
        "%s failed (%s) and undoing it failed too (%s): this process's vaspace window is "
        "now in an unknown state; do not touch segment memory, restart the process",
        what, strerror(err), strerror(undo_err));
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", ENOTRECOVERABLE, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}
