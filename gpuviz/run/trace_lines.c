/* The tracer's work at the moments a training step's kernels have left the CPU's caches cold,
 * in C: trace.span's start and end (Span, below), and a rank's events written as JSON lines
 * in one call. gpuviz.run.lines loads this module
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


/* ---- spans: trace.span's start and end, the tracer's other moment in a cold cache ----------
 * Span(name, cat="compute", **args) is gpuviz.run.tracer.span for CPU tracers: configure()
 * gives it the tracer module's hooks, set_tracer() the running tracer. Its start and end
 * do what span.__enter__ and span.__exit__ do, here; a CUDA tracer's timing and an
 * exception's unwinding call back into Python (cuda_enter, cuda_exit, unwinding). */
#include <structmember.h>

static PyObject *TRACER, *CATS, *CHECK_CATEGORY, *CUDA_ENTER, *CUDA_EXIT, *UNWINDING;
static PyObject *S_CUDA, *S_OPEN, *S_EVENTS, *S_ORIGIN, *S_STEP, *S_CAT, *S_NAME;
static unsigned long MAIN_TID;

typedef struct {
    PyObject_HEAD
    PyObject *name, *cat, *args, *ev, *tid_obj;
    double t;
    unsigned long tid;
    int entered;
} Span;

static long long now_ns(void) {
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_PerfCounterRaw(&t) < 0) return 0;
    return (long long)t;
#else
    return (long long)_PyTime_GetPerfCounter();
#endif
}

static PyTypeObject SpanType;

static PyObject *Span_vectorcall(PyObject *type, PyObject *const *argv, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "span() takes a name and a category as positional arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *name = nargs ? argv[0] : NULL, *cat = nargs == 2 ? argv[1] : NULL, *args = NULL;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i), *v = argv[nargs + i];
        int is_cat = PyUnicode_Compare(k, S_CAT) == 0;
        if (is_cat || PyUnicode_Compare(k, S_NAME) == 0) {
            PyObject **slot = is_cat ? &cat : &name;
            if (*slot) {
                PyErr_Format(PyExc_TypeError, "span() got multiple values for argument '%U'", k);
                goto fail;
            }
            *slot = v;
            continue;
        }
        if (!args && !(args = PyDict_New())) goto fail;
        if (PyDict_SetItem(args, k, v) < 0) goto fail;
    }
    if (!name) { PyErr_SetString(PyExc_TypeError, "span() missing 1 required positional argument: 'name'"); goto fail; }
    if (!cat) cat = PyTuple_GET_ITEM(CATS, 0);   /* "compute" */
    int known = PySequence_Contains(PyTuple_GET_ITEM(CATS, 1), cat);
    if (known < 0) goto fail;
    if (!known) {   /* the module's check raises its ValueError */
        PyObject *r = PyObject_CallOneArg(CHECK_CATEGORY, cat);
        if (!r) goto fail;
        Py_DECREF(r);
    }
    Span *self = PyObject_New(Span, (PyTypeObject *)type);
    if (!self) goto fail;
    Py_INCREF(name); Py_INCREF(cat);
    self->name = name; self->cat = cat;
    self->ev = NULL; self->tid_obj = NULL; self->args = NULL;
    if (!args && !(args = PyDict_New())) { Py_DECREF(self); return NULL; }   /* its own, as in Python */
    self->args = args;
    self->t = 0.0; self->tid = 0; self->entered = 0;
    return (PyObject *)self;
fail:
    Py_XDECREF(args);
    return NULL;
}

static PyObject *Span_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    /* span.__new__(span, ...): the one call that does not take the vectorcall route */
    Py_ssize_t n = PyTuple_GET_SIZE(args), nk = kwds ? PyDict_GET_SIZE(kwds) : 0;
    PyObject **argv = PyMem_Malloc((size_t)(n + nk + 1) * sizeof(PyObject *));
    PyObject *names = nk ? PyTuple_New(nk) : NULL;
    if (!argv || (nk && !names)) { PyMem_Free(argv); Py_XDECREF(names); return PyErr_NoMemory(); }
    for (Py_ssize_t i = 0; i < n; i++) argv[i] = PyTuple_GET_ITEM(args, i);
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    while (nk && PyDict_Next(kwds, &pos, &k, &v)) { Py_INCREF(k); PyTuple_SET_ITEM(names, i, k); argv[n + i++] = v; }
    PyObject *r = Span_vectorcall((PyObject *)type, argv, (size_t)n, names);
    PyMem_Free(argv);
    Py_XDECREF(names);
    return r;
}

static void Span_dealloc(Span *self) {
    Py_XDECREF(self->name); Py_XDECREF(self->cat); Py_XDECREF(self->args);
    Py_XDECREF(self->ev); Py_XDECREF(self->tid_obj);
    PyObject_Free(self);
}

static double now_us(PyObject *t, int *bad) {
    PyObject *o = PyObject_GetAttr(t, S_ORIGIN);
    if (!o) { *bad = 1; return 0.0; }
    long long origin = PyLong_AsLongLong(o);
    Py_DECREF(o);
    if (origin == -1 && PyErr_Occurred()) { *bad = 1; return 0.0; }
    return (double)(now_ns() - origin) / 1000.0;
}

/* whether tracer t times spans with CUDA events (-1: an error) */
static int on_cuda(PyObject *t) {
    PyObject *cuda = PyObject_GetAttr(t, S_CUDA);
    if (!cuda) return -1;
    int r = PyObject_IsTrue(cuda);
    Py_DECREF(cuda);
    return r;
}

static PyObject *enter(Span *self, PyObject *t) {
    self->tid = PyThread_get_thread_ident();
    Py_XSETREF(self->tid_obj, PyLong_FromUnsignedLong(self->tid));
    if (!self->tid_obj) return NULL;
    int cuda = on_cuda(t);
    if (cuda < 0) return NULL;
    if (cuda) {
        PyObject *ev = PyObject_CallOneArg(CUDA_ENTER, t);
        if (!ev) return NULL;
        Py_XSETREF(self->ev, ev);
    }
    int bad = 0;
    double ts = now_us(t, &bad);
    if (bad) return NULL;
    self->t = ts;
    PyObject *open = PyObject_GetAttr(t, S_OPEN);
    if (!open) return NULL;
    PyObject *stack = PyDict_GetItemWithError(open, self->tid_obj);   /* borrowed */
    int r = -1;
    if (!stack) {
        if (PyErr_Occurred() || !(stack = PyList_New(0))) goto done;
        r = PyDict_SetItem(open, self->tid_obj, stack);
        Py_DECREF(stack);   /* the dict holds it */
        if (r < 0) goto done;
    }
    PyObject *t0 = PyFloat_FromDouble(ts), *entry = t0 ? PyTuple_Pack(3, self->name, self->cat, t0) : NULL;
    Py_XDECREF(t0);
    r = entry ? PyList_Append(stack, entry) : -1;
    Py_XDECREF(entry);
done:
    Py_DECREF(open);
    if (r < 0) return NULL;
    self->entered = 1;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *leave(Span *self, PyObject *t, PyObject *exc) {
    if (exc != Py_None) {
        PyObject *r = PyObject_CallFunctionObjArgs(UNWINDING, t, exc, NULL);
        if (!r) return NULL;
        Py_DECREF(r);
    }
    PyObject *open = PyObject_GetAttr(t, S_OPEN);
    if (!open) return NULL;
    PyObject *stack = PyDict_GetItemWithError(open, self->tid_obj);
    Py_DECREF(open);   /* the stack stays alive in the tracer's dict */
    if (!stack && PyErr_Occurred()) return NULL;
    if (stack && PyList_Check(stack) && PyList_GET_SIZE(stack) > 0) {
        Py_ssize_t n = PyList_GET_SIZE(stack);
        if (PyList_SetSlice(stack, n - 1, n, NULL) < 0) return NULL;
    }
    long lane = self->tid == MAIN_TID ? 0 : 1;
    int cuda = on_cuda(t);
    if (cuda < 0) return NULL;
    if (cuda) {
        PyObject *lane_obj = PyLong_FromLong(lane);
        if (!lane_obj) return NULL;
        PyObject *r = PyObject_CallFunctionObjArgs(CUDA_EXIT, t, (PyObject *)self, lane_obj, NULL);
        Py_DECREF(lane_obj);
        if (!r) return NULL;
        Py_DECREF(r);
        Py_RETURN_FALSE;
    }
    int bad = 0;
    double end = now_us(t, &bad);
    if (bad) return NULL;
    PyObject *events = PyObject_GetAttr(t, S_EVENTS), *step = PyObject_GetAttr(t, S_STEP);
    PyObject *e = NULL;
    if (events && step) {
        e = PyTuple_New(7);
        if (e) {
            PyObject *ts = PyFloat_FromDouble(self->t), *dur = PyFloat_FromDouble(end - self->t),
                     *ln = PyLong_FromLong(lane);
            Py_INCREF(self->name); Py_INCREF(self->cat); Py_INCREF(step); Py_INCREF(self->args);
            PyTuple_SET_ITEM(e, 0, self->name); PyTuple_SET_ITEM(e, 1, self->cat);
            PyTuple_SET_ITEM(e, 2, ts); PyTuple_SET_ITEM(e, 3, dur); PyTuple_SET_ITEM(e, 4, ln);
            PyTuple_SET_ITEM(e, 5, step); PyTuple_SET_ITEM(e, 6, self->args);
            if (!ts || !dur || !ln || PyList_Append(events, e) < 0) Py_CLEAR(e);
        }
    }
    Py_XDECREF(events); Py_XDECREF(step);
    if (!e) return NULL;
    Py_DECREF(e);
    Py_RETURN_FALSE;
}

/* The tracer is held while a start or end runs: a callback into Python (CUDA timing, an
 * exception's unwinding) may let another thread set another tracer meanwhile. */
static PyObject *Span_enter(Span *self, PyObject *unused) {
    PyObject *t = TRACER;
    if (t == NULL || t == Py_None) { Py_INCREF(self); return (PyObject *)self; }
    Py_INCREF(t);
    PyObject *r = enter(self, t);
    Py_DECREF(t);
    return r;
}

static PyObject *Span_exit(Span *self, PyObject *const *argv, Py_ssize_t argc) {
    PyObject *t = TRACER;
    if (t == NULL || t == Py_None || !self->entered) Py_RETURN_FALSE;
    Py_INCREF(t);
    PyObject *r = leave(self, t, argc >= 2 ? argv[1] : Py_None);
    Py_DECREF(t);
    return r;
}

static PyMethodDef span_methods[] = {
    {"__enter__", (PyCFunction)Span_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Span_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL}};
static PyMemberDef span_members[] = {
    {"name", T_OBJECT, offsetof(Span, name), READONLY, NULL},
    {"cat", T_OBJECT, offsetof(Span, cat), READONLY, NULL},
    {"args", T_OBJECT, offsetof(Span, args), READONLY, NULL},
    {"_t", T_DOUBLE, offsetof(Span, t), READONLY, NULL},
    {"_ev", T_OBJECT, offsetof(Span, ev), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};
static PyTypeObject SpanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gpuviz.run.tracer.span",
    .tp_basicsize = sizeof(Span),
    .tp_dealloc = (destructor)Span_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "span(name, cat='compute', **args)\n--\n\n"
              "Time a block as one span on this rank's main lane (compiled; the same in Python:\n"
              "gpuviz.run.tracer.python_span).\n\n"
              "``cat`` is one of gpuviz.run.categories.CATEGORIES; keyword arguments (``bytes=``,\n"
              "``bucket=``...) go into the event's ``args``. A no-op when no tracer is running.\n\n"
              ">>> with span(\"forward\", cat=\"compute\"):\n...     pass\n",
    .tp_methods = span_methods,
    .tp_members = span_members,
    .tp_new = Span_new,
    .tp_vectorcall = Span_vectorcall,
};

/* configure(cats, check_category, cuda_enter, cuda_exit, unwinding, main_tid) */
static PyObject *configure(PyObject *self, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 6) { PyErr_SetString(PyExc_TypeError, "configure(cats, check_category, cuda_enter, cuda_exit, unwinding, main_tid)"); return NULL; }
    Py_INCREF(argv[0]); Py_XSETREF(CATS, argv[0]);
    Py_INCREF(argv[1]); Py_XSETREF(CHECK_CATEGORY, argv[1]);
    Py_INCREF(argv[2]); Py_XSETREF(CUDA_ENTER, argv[2]);
    Py_INCREF(argv[3]); Py_XSETREF(CUDA_EXIT, argv[3]);
    Py_INCREF(argv[4]); Py_XSETREF(UNWINDING, argv[4]);
    MAIN_TID = PyLong_AsUnsignedLong(argv[5]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}
static PyObject *set_tracer(PyObject *self, PyObject *t) {
    Py_INCREF(t);
    Py_XSETREF(TRACER, t);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL, "configure(cats, check_category, cuda_enter, cuda_exit, unwinding, main_tid)"},
    {"set_tracer", (PyCFunction)set_tracer, METH_O, "set_tracer(tracer or None): the tracer spans record to"},
    {"write_lines", (PyCFunction)(void (*)(void))write_lines, METH_FASTCALL, "write_lines(rank, fallback, fd, events): the events as JSON lines, written to fd; returns the bytes written"},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "trace_lines", NULL, -1, methods};
PyMODINIT_FUNC PyInit_trace_lines(void) {
    if (!STEP && !(STEP = PyUnicode_InternFromString("step"))) return NULL;
    if (!(S_CUDA = PyUnicode_InternFromString("cuda")) || !(S_OPEN = PyUnicode_InternFromString("_open"))
        || !(S_EVENTS = PyUnicode_InternFromString("_events"))
        || !(S_ORIGIN = PyUnicode_InternFromString("origin_ns"))
        || !(S_STEP = PyUnicode_InternFromString("step_index")) || !(S_CAT = PyUnicode_InternFromString("cat"))
        || !(S_NAME = PyUnicode_InternFromString("name")))
        return NULL;
    if (PyType_Ready(&SpanType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&SpanType);
    if (PyModule_AddObject(m, "Span", (PyObject *)&SpanType) < 0) { Py_DECREF(&SpanType); Py_DECREF(m); return NULL; }
    return m;
}
