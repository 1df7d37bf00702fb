/* binding_output.c: where results go: checking and using out=, and the
 * allocator that starts big outputs on a 2 MiB boundary. */
#include "binding.h"

#include <stdlib.h>
#include <string.h>

/* Byte range [lo, hi) an array touches. */
static void byte_extent(PyArrayObject *a, char **lo, char **hi)
{
    char *l = PyArray_BYTES(a), *h = PyArray_BYTES(a);
    for (int d = 0; d < PyArray_NDIM(a); d++) {
        const npy_intp ext = (PyArray_DIM(a, d) - 1) * PyArray_STRIDE(a, d);
        if (PyArray_DIM(a, d) == 0)
            return (void)(*lo = *hi = l);
        if (ext < 0) l += ext; else h += ext;
    }
    *lo = l;
    *hi = h + PyArray_ITEMSIZE(a);
}

/* out may be written directly only when the kernel can write it in place:
 * same dtype, aligned, native, and either disjoint from every input or
 * of its shape and laid out exactly like it (each element is read before it
 * is written). */
int out_usable_directly(PyArrayObject *out, int typenum, PyArrayObject *const *inputs, int ninputs)
{
    if (sized_typenum(PyArray_DESCR(out)) != typenum || !PyArray_ISALIGNED(out) ||
        !PyArray_ISNOTSWAPPED(out))
        return 0;
    for (int i = 0; i < ninputs; i++) {
        char *ol, *oh, *il, *ih;
        byte_extent(out, &ol, &oh);
        byte_extent(inputs[i], &il, &ih);
        if (ol >= ih || il >= oh)
            continue;
        /* the shapes first: a state operand (h0) has fewer dimensions, and
         * a view of out's first rows is read after out's rows are written */
        if (PyArray_BYTES(out) == PyArray_BYTES(inputs[i]) &&
            PyArray_SAMESHAPE(out, inputs[i]) &&
            memcmp(PyArray_STRIDES(out), PyArray_STRIDES(inputs[i]), sizeof(npy_intp) * PyArray_NDIM(out)) == 0 &&
            PyArray_ITEMSIZE(out) == PyArray_ITEMSIZE(inputs[i]))
            continue;
        return 0;
    }
    return 1;
}

/* Two outputs that share memory would each overwrite the other's results,
 * so they are refused: a byte-range test first, then NumPy's exact one for
 * the rare interleaved views (e.g. the two fields of one record array). */
int check_outputs_disjoint(const char *op, PyArrayObject *first, PyArrayObject *second)
{
    char *l1, *h1, *l2, *h2;
    PyObject *numpy, *shared;
    int overlap;
    if (first == NULL || second == NULL || PyArray_SIZE(first) == 0 || PyArray_SIZE(second) == 0)
        return 0;
    byte_extent(first, &l1, &h1);
    byte_extent(second, &l2, &h2);
    if (l1 >= h2 || l2 >= h1)
        return 0;
    if ((numpy = PyImport_ImportModule("numpy")) == NULL)
        return -1;
    shared = PyObject_CallMethod(numpy, "shares_memory", "OO", (PyObject *)first, (PyObject *)second);
    Py_DECREF(numpy);
    if (shared == NULL)
        return -1;
    overlap = PyObject_IsTrue(shared);
    Py_DECREF(shared);
    if (overlap > 0)
        PyErr_Format(PyExc_ValueError, "%s: out[0] (the values) and out[1] (the indices) must not "
                     "share memory", op);
    return overlap ? -1 : 0;
}

int check_out(const char *op, const char *what, PyObject *obj, PyArrayObject *like, int typenum,
                     PyArrayObject **out)
{
    PyArrayObject *o;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a numpy.ndarray; got %.100s", op, what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    o = (PyArrayObject *)obj;
    if (!PyArray_SAMESHAPE(o, like)) {
        PyObject *got = PyObject_GetAttrString(obj, "shape");
        PyObject *want = PyObject_GetAttrString((PyObject *)like, "shape");
        if (got != NULL && want != NULL)
            PyErr_Format(PyExc_ValueError, "%s: %s must have the result's shape %R; got %R", op, what, want, got);
        Py_XDECREF(got);
        Py_XDECREF(want);
        return -1;
    }
    if (!PyArray_ISWRITEABLE(o)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be a writeable array; it is read-only", op, what);
        return -1;
    }
    {
        PyArray_Descr *rd = PyArray_DescrFromType(typenum);
        int ok = PyArray_CanCastTypeTo(rd, PyArray_DESCR(o), NPY_SAME_KIND_CASTING);
        if (!ok) {
            PyObject *a = descr_repr(rd), *b = descr_repr(PyArray_DESCR(o));
            if (a && b)
                PyErr_Format(PyExc_TypeError, "%s: cannot write the %U result into %s of dtype %U (same_kind casting)",
                             op, a, what, b);
            Py_XDECREF(a);
            Py_XDECREF(b);
        }
        Py_DECREF(rd);
        if (!ok)
            return -1;
    }
    *out = o;
    return 0;
}

/* ---- big outputs start on a 2 MiB boundary ----
 * NumPy's default allocator hands a big array the page glibc's mmap happened
 * to return, so its first and last up-to-2 MiB sit on 4 KiB pages and the
 * rest on huge pages placed off the array's start; an output written while it
 * is faulted in then costs more than one on whole huge pages (figures in
 * docs/performance.md, "Result placement").  So outputs of OUTPUT_ALIGN_MIN
 * bytes or more come from this allocator, which NumPy records on the array
 * and calls again to free it (NumPy >= 1.22): the array owns its data as
 * usual.  Each block is one malloc'd chunk with room to align inside it (a
 * header before the data keeps the chunk and the size), not posix_memalign,
 * whose split-off ends keep a freed block from being reused whole: with
 * glibc serving big blocks from its heap, repeated JVPs grew it by a block
 * per call.  Smaller outputs keep NumPy's allocator. */
#if defined(__linux__)
#include <sys/mman.h>
#define OUTPUT_ALIGN_MIN ((size_t)4 << 20) /* where NumPy starts asking for huge pages */

typedef struct {
    void *chunk;
    size_t size;
} output_header;

static void *output_malloc(void *ctx, size_t size)
{
    const size_t align = size >= OUTPUT_ALIGN_MIN ? (size_t)2 << 20 : 64;
    char *chunk, *p;
    (void)ctx;
    if (size > SIZE_MAX - align - sizeof(output_header) ||
        (chunk = malloc(size + align + sizeof(output_header))) == NULL)
        return NULL;
    p = chunk + ((align - ((uintptr_t)chunk + sizeof(output_header)) % align) % align) +
        sizeof(output_header);
    memcpy(p - sizeof(output_header), &(output_header){chunk, size}, sizeof(output_header));
#if defined(MADV_HUGEPAGE)
    if (size >= OUTPUT_ALIGN_MIN) /* advice, like NumPy's: failure is harmless */
        madvise(p, size & ~(size_t)4095, MADV_HUGEPAGE);
#endif
    return p;
}

static output_header output_header_of(void *p)
{
    output_header h;
    memcpy(&h, (char *)p - sizeof(output_header), sizeof(output_header));
    return h;
}

static void *output_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p;
    if (elsize != 0 && nelem > SIZE_MAX / elsize)
        return NULL;
    if ((p = output_malloc(ctx, nelem * elsize)) != NULL)
        memset(p, 0, nelem * elsize);
    return p;
}

static void *output_realloc(void *ctx, void *p, size_t size)
{
    void *q;
    if (p == NULL)
        return output_malloc(ctx, size);
    if ((q = output_malloc(ctx, size)) != NULL) {
        const output_header h = output_header_of(p);
        memcpy(q, p, h.size < size ? h.size : size);
        free(h.chunk);
    }
    return q;
}

static void output_free(void *ctx, void *p, size_t size)
{
    (void)ctx, (void)size;
    if (p != NULL)
        free(output_header_of(p).chunk);
}

static PyDataMem_Handler output_handler = {
    "scanad_output_huge_aligned", 1,
    {NULL, output_malloc, output_calloc, output_realloc, output_free}};
static PyObject *output_handler_capsule;

int binding_output_init(void)
{
    if ((output_handler_capsule = PyCapsule_New(&output_handler, "mem_handler", NULL)) == NULL)
        return -1;
    return 0;
}
#else
int binding_output_init(void) { return 0; }
#endif

PyArrayObject *new_like(PyArrayObject *x, int typenum)
{
    PyArray_Descr *d = PyArray_DescrFromType(typenum);
    PyObject *was = NULL; /* the caller's handler, while ours is set */
    PyArrayObject *y;
#if defined(__linux__)
    if (output_handler_capsule != NULL &&
        (size_t)PyArray_SIZE(x) * (size_t)PyDataType_ELSIZE(d) >= OUTPUT_ALIGN_MIN &&
        (was = PyDataMem_SetHandler(output_handler_capsule)) == NULL) {
        Py_DECREF(d);
        return NULL;
    }
#endif
    y = (PyArrayObject *)PyArray_NewLikeArray(x, NPY_KEEPORDER, d, 0); /* steals d */
    if (was != NULL) {
        PyObject *ours = PyDataMem_SetHandler(was); /* back, even on failure */
        Py_DECREF(was);
        if (ours == NULL)
            Py_CLEAR(y);
        Py_XDECREF(ours);
    }
    return y;
}

int deliver_out(PyArrayObject *out, PyArrayObject **result)
{
    if (out == NULL || *result == out)
        return 0;
    if (PyArray_CopyInto(out, *result) < 0)
        return -1;
    Py_INCREF(out);
    Py_SETREF(*result, out);
    return 0;
}
