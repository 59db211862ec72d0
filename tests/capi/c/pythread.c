/*
 * pythread.c FLAG: a Python thread started while a C program uses the
 * library (here by the program itself, as code a call runs could) must get
 * the GIL between the program's calls, even when those calls never run
 * Python bytecode (a switch that stays put is pure C).
 *
 * The thread sleeps 50 ms, then creates FLAG; meanwhile the program calls
 * vas_switch(0) in a loop for at most 10 s.  Prints
 * "check python_thread_runs_between_calls 1" if FLAG appeared in time.
 */
#include <Python.h>

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <vaspace.h>

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    /* The first call starts the interpreter: one C thread, the GIL sticky. */
    if (active_vas() != 0 || vas_switch(0) != 0) {
        printf("error %s\n", vaspace_last_error());
        return 1;
    }
    char code[4096];
    snprintf(code, sizeof(code),
             "import threading, time\n"
             "def f():\n"
             "    time.sleep(0.05)\n"
             "    open(%s%s%s, 'w').close()\n"
             "threading.Thread(target=f, daemon=True).start()\n",
             "'", argv[1], "'");
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = PyRun_SimpleString(code);
    PyGILState_Release(g);
    if (rc != 0)
        return 1;
    int seen = 0;
    for (double t0 = now_s(); !seen && now_s() - t0 < 10.0;) {
        for (int i = 0; i < 1000; i++)
            if (vas_switch(0) != 0)
                return 1;
        seen = access(argv[1], F_OK) == 0;
    }
    printf("check python_thread_runs_between_calls %d\n", seen);
    return 0;
}
