/*
 * core/module.c: the vaspace._core module: each file's functions, the two
 * buffer types, the heap's capsule and the constants (core.h has the map).
 */
#include "core.h"

/* Each file's functions, in the order of the map in core.h. */
static PyMethodDef *const method_tables[] = {
    mappings_methods, moves_methods, plans_methods, threads_methods, switch_methods,
    fork_methods, lookups_methods, fixedmap_methods,
};

static int
add_type(PyObject *m, const char *name, PyTypeObject *type)
{
    Py_INCREF(type);
    if (PyModule_AddObject(m, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

static int
core_exec(PyObject *m)
{
    for (size_t i = 0; i < sizeof(method_tables) / sizeof(method_tables[0]); i++)
        if (PyModule_AddFunctions(m, method_tables[i]) < 0)
            return -1;
    PyObject *capsule = PyCapsule_New((void *)&core_api, VASPACE_CORE_API_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(m, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        return -1;
    }
    if (add_type(m, "WindowView", &WindowViewType) < 0 ||
        add_type(m, "FixedMap", &FixedMapType) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "PROT_NONE", PROT_NONE) < 0 ||
        PyModule_AddIntConstant(m, "PROT_READ", PROT_READ) < 0 ||
        PyModule_AddIntConstant(m, "PROT_WRITE", PROT_WRITE) < 0)
        return -1;
    return 0;
}

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "vaspace._core",
    "System calls and switch hot state for vaspace (no policy here).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0)
        page_size = (unsigned long long)ps;
    if (PyType_Ready(&WindowViewType) < 0)
        return NULL;
    if (PyType_Ready(&FixedMapType) < 0) /* vaspace.shared_memory's exporter */
        return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    if (core_exec(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
