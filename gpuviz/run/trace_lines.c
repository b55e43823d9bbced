/* A rank's events written as JSON lines in one call: gpuviz.run.lines loads this module
 * (built with the C compiler on first use) so that the end of a training step, when little
 * of the interpreter is in the CPU's caches, runs one function instead of building a dict and
 * encoding it for every event. Spans, instants and counters kept as tuples are written here; any
 * other event, and any tuple holding a value this file does not write (a tensor, an integer
 * past 64 bits, a key that is not a string...), goes to the caller's fallback, which returns
 * its line. Every line is what json.loads reads back as the event the Python route writes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* The lines are built in a buffer on the stack, moved to the heap only for a step with many
 * events: what runs at a step's end is in the CPU's caches least, so it does as little as it can
 * (no allocation, no printf or dtoa for the usual numbers). */
typedef struct { char *p; size_t n, cap; int heap; } Buf;

static int grow(Buf *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap * 2;
    while (cap < b->n + more) cap *= 2;
    char *p = b->heap ? PyMem_Realloc(b->p, cap) : PyMem_Malloc(cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    if (!b->heap) memcpy(p, b->p, b->n);
    b->p = p; b->cap = cap; b->heap = 1;
    return 0;
}
static void release(Buf *b) { if (b->heap) PyMem_Free(b->p); }
static int put(Buf *b, const char *s, size_t n) {
    if (grow(b, n)) return -1;
    memcpy(b->p + b->n, s, n); b->n += n;
    return 0;
}
#define PUTS(b, lit) put(b, lit, sizeof(lit) - 1)

/* a JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8 */
static int put_str(Buf *b, PyObject *o) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) {   /* a lone surrogate: not UTF-8, the fallback escapes it */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    if (grow(b, 6 * (size_t)n + 2)) return -1;
    char *d = b->p + b->n;
    *d++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { *d++ = '\\'; *d++ = (char)c; }
        else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            *d++ = '\\'; *d++ = 'u'; *d++ = '0'; *d++ = '0'; *d++ = hex[c >> 4]; *d++ = hex[c & 15];
        } else *d++ = (char)c;
    }
    *d++ = '"';
    b->n = (size_t)(d - b->p);
    return 0;
}
/* the decimal digits of v, then (where decimals > 0) a point before the last `decimals` */
static int put_digits(Buf *b, unsigned long long v, int negative, int decimals) {
    char tmp[32], *end = tmp + sizeof tmp, *d = end;
    for (int i = 0; i < decimals; i++) { *--d = (char)('0' + v % 10); v /= 10; }
    if (decimals) *--d = '.';
    do { *--d = (char)('0' + v % 10); v /= 10; } while (v);
    if (negative) *--d = '-';
    return put(b, d, (size_t)(end - d));
}
/* a number rounded to 3 decimals, as round(x, 3) then JSON would write it (null if not finite).
 * x * 1000 is rounded by hand unless it lies so near a half that the product's own rounding
 * could decide which way it goes; then (and for huge x) by Python's correctly rounded dtoa. */
static int put_ms(Buf *b, double x) {
    if (!isfinite(x)) return PUTS(b, "null");
    double a = fabs(x) * 1000.0;
    if (a < 1e15) {
        double whole = floor(a), frac = a - whole;   /* both exact below 2^52 */
        if (fabs(frac - 0.5) > nextafter(a, INFINITY) - a)
            return put_digits(b, (unsigned long long)whole + (frac > 0.5), signbit(x) != 0, 3);
    }
    char *s = PyOS_double_to_string(x, 'f', 3, 0, NULL);
    if (!s) return -1;
    int r = put(b, s, strlen(s));
    PyMem_Free(s);
    return r;
}
static int put_int(Buf *b, long long v) {
    return put_digits(b, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, v < 0, 0);
}
/* an args value the fast path writes: str, bool, int that fits, finite float; else 1 */
static int simple_value(Buf *b, PyObject *v) {
    if (PyUnicode_CheckExact(v)) return put_str(b, v);
    if (v == Py_True) return PUTS(b, "true");
    if (v == Py_False) return PUTS(b, "false");
    if (v == Py_None) return PUTS(b, "null");
    if (PyLong_CheckExact(v)) {
        int over = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &over);
        if (over) return 1;
        if (x == -1 && PyErr_Occurred()) return -1;
        return put_int(b, x);
    }
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        if (!isfinite(x)) return PUTS(b, "null");
        char *s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (!s) return -1;
        int r = put(b, s, strlen(s));
        PyMem_Free(s);
        return r;
    }
    return 1;
}
/* ,"args":{...}} and the newline: "step" first where given, then the dict's items */
static int put_args(Buf *b, PyObject *args, PyObject *step) {
    int r;
    if ((r = PUTS(b, ",\"args\":{"))) return r;
    if (step && ((r = PUTS(b, "\"step\":")) || (r = simple_value(b, step)))) return r;
    int first = step == NULL;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(args, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k)) return 1;
        if ((!first && (r = PUTS(b, ","))) || (r = put_str(b, k)) || (r = PUTS(b, ":"))
            || (r = simple_value(b, v)))
            return r;
        first = 0;
    }
    return PUTS(b, "}}\n");
}

/* "name":...,"cat":... */
static int put_names(Buf *b, PyObject *name, PyObject *cat) {
    int r = PUTS(b, "\"name\":");
    if (!r) r = put_str(b, name);
    if (!r && cat) r = PUTS(b, ",\"cat\":");
    if (!r && cat) r = put_str(b, cat);
    return r;
}

/* ,"pid":R,"tid":lane (no tid where lane is NULL) */
static int put_ids(Buf *b, const char *pid, size_t npid, PyObject *lane) {
    int r = PUTS(b, ",\"pid\":");
    if (!r) r = put(b, pid, npid);
    if (!r && lane) r = PUTS(b, ",\"tid\":");
    if (!r && lane) r = simple_value(b, lane);
    return r;
}

/* One event tuple's line; 1: not one this file writes (the caller's fallback does), with
 * nothing of it left in the buffer. A span (name, cat, ts, dur, lane, step, args), an
 * instant (name, cat, ts, lane, step, args) or a counter (name, ts, args). */
static PyObject *STEP;   /* "step", interned */

static int put_tuple(Buf *b, PyObject *t, const char *pid, size_t npid) {
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    if (n != 7 && n != 6 && n != 3) return 1;
    PyObject *name = PyTuple_GET_ITEM(t, 0), *args = PyTuple_GET_ITEM(t, n - 1);
    PyObject *cat = n == 3 ? NULL : PyTuple_GET_ITEM(t, 1);
    PyObject *ts = PyTuple_GET_ITEM(t, n == 3 ? 1 : 2), *dur = n == 7 ? PyTuple_GET_ITEM(t, 3) : NULL;
    PyObject *lane = n == 3 ? NULL : PyTuple_GET_ITEM(t, n - 3), *step = n == 3 ? NULL : PyTuple_GET_ITEM(t, n - 2);
    if (!PyUnicode_CheckExact(name) || (cat && !PyUnicode_CheckExact(cat)) || !PyFloat_CheckExact(ts)
        || (dur && !PyFloat_CheckExact(dur)) || (lane && !PyLong_CheckExact(lane))
        || (step && !PyLong_CheckExact(step)) || !PyDict_CheckExact(args)
        || (step && PyDict_GET_SIZE(args) && PyDict_GetItemWithError(args, STEP)))   /* a dict's rules decide which wins */
        return 1;
    size_t start = b->n;
    int r = n == 7 ? PUTS(b, "{\"ph\":\"X\",") : n == 6 ? PUTS(b, "{\"ph\":\"i\",\"s\":\"p\",")
                                          : PUTS(b, "{\"ph\":\"C\",");
    if (!r) r = put_names(b, name, cat);
    if (!r) r = PUTS(b, ",\"ts\":");
    if (!r) r = put_ms(b, PyFloat_AS_DOUBLE(ts));
    if (!r && dur) r = PUTS(b, ",\"dur\":");
    if (!r && dur) r = put_ms(b, PyFloat_AS_DOUBLE(dur));
    if (!r) r = put_ids(b, pid, npid, lane);
    if (!r) r = put_args(b, args, step);
    if (r > 0) b->n = start;
    if (!r && PyErr_Occurred()) r = -1;   /* PyDict_GetItemWithError failed */
    return r;
}

/* write_lines(rank, fallback, fd, events) -> bytes written (the first two bound by the caller) */
static PyObject *write_lines(PyObject *self, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 4) { PyErr_SetString(PyExc_TypeError, "write_lines(rank, fallback, fd, events)"); return NULL; }
    long rank = PyLong_AsLong(argv[0]);
    PyObject *fallback = argv[1], *events = argv[3];
    int fd = PyLong_AsLong(argv[2]);
    if (PyErr_Occurred()) return NULL;
    if (!PyList_CheckExact(events)) { PyErr_SetString(PyExc_TypeError, "events: a list"); return NULL; }
    char stack[8192];
    Buf b = {stack, 0, sizeof stack, 0};
    if (put_int(&b, rank)) return NULL;
    char pid[32];
    size_t npid = b.n < sizeof pid ? b.n : sizeof pid;
    memcpy(pid, b.p, npid);
    b.n = 0;
    Py_ssize_t n = PyList_GET_SIZE(events);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(events, i);
        int r = PyTuple_CheckExact(e) ? put_tuple(&b, e, pid, npid) : 1;
        if (r < 0) goto fail;
        if (r > 0) {   /* anything else: the fallback's bytes (one JSON line with its newline) */
            PyObject *line = PyObject_CallOneArg(fallback, e);
            if (!line) goto fail;
            if (!PyBytes_Check(line)) { Py_DECREF(line); PyErr_SetString(PyExc_TypeError, "fallback: bytes"); goto fail; }
            int bad = put(&b, PyBytes_AS_STRING(line), (size_t)PyBytes_GET_SIZE(line));
            Py_DECREF(line);
            if (bad) goto fail;
        }
    }
    size_t done = 0;
    while (done < b.n) {
        ssize_t w;
        Py_BEGIN_ALLOW_THREADS   /* a slow disk (a shared filesystem) holds no other thread */
        w = write(fd, b.p + done, b.n - done);
        Py_END_ALLOW_THREADS
        if (w < 0) {
            if (errno == EINTR) { if (PyErr_CheckSignals()) goto fail; continue; }
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        done += (size_t)w;
    }
    release(&b);
    return PyLong_FromSize_t(done);
fail:
    release(&b);
    return NULL;
}

static PyMethodDef methods[] = {
    {"write_lines", (PyCFunction)(void (*)(void))write_lines, METH_FASTCALL, "write_lines(rank, fallback, fd, events): the events as JSON lines, written to fd; returns the bytes written"},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "trace_lines", NULL, -1, methods};
PyMODINIT_FUNC PyInit_trace_lines(void) {
    if (!STEP && !(STEP = PyUnicode_InternFromString("step"))) return NULL;
    return PyModule_Create(&module);
}
