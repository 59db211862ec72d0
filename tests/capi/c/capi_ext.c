/*
 * capi_ext.c: a Python extension module that uses vaspace's C API, for the
 * test that a C extension in a running Python process shares that
 * process's interpreter and vaspace (no second interpreter).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <pthread.h>

#include <vaspace.h>

#define W 0x400000000000UL

/* enter(name) -> (vid, active_vas()): a VAS with one page at W, entered, 7 written. */
static PyObject *
ext_enter(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    char seg[300];
    snprintf(seg, sizeof(seg), "%s-s", name);
    vasid_t vid = vas_create(name, 0600);
    segid_t sid = segment_create_sz(seg, W, 4096, 0600);
    if (vid < 0 || sid < 0 || segment_attach(vid, sid, O_RDWR) < 0 ||
        vas_attach(0, vid, O_RDWR) < 0 || vas_switch(vid) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    *(volatile int *)W = 7;
    return Py_BuildValue("(ii)", vid, active_vas());
}

struct result {
    vasid_t vid;
    int rc, active, value, after;
};

static void *
thread_main(void *arg)
{
    struct result *r = arg;
    r->rc = vas_switch(r->vid);
    r->active = active_vas();
    r->value = r->rc == 0 ? *(volatile int *)W : -1;
    vas_switch(0);
    r->after = active_vas();
    return NULL;
}

/* in_thread(vid) -> (rc, active, value, active_after): the same from a
 * thread Python never saw, with the GIL released meanwhile. */
static PyObject *
ext_in_thread(PyObject *self, PyObject *arg)
{
    struct result r = {.vid = (vasid_t)PyLong_AsLong(arg)};
    if (PyErr_Occurred())
        return NULL;
    pthread_t th;
    Py_BEGIN_ALLOW_THREADS
    pthread_create(&th, NULL, thread_main, &r);
    pthread_join(th, NULL);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(iiii)", r.rc, r.active, r.value, r.after);
}

static PyMethodDef methods[] = {
    {"enter", ext_enter, METH_O, NULL},
    {"in_thread", ext_in_thread, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "capi_ext", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_capi_ext(void)
{
    return PyModule_Create(&module);
}
