/* table.h: instantiates every op's kernels for every dtype of scan_matrix.h
 * and fills one scan_table from them.  An ISA translation unit sets its
 * target flags, defines SCAN_TABLE_NAME and SCAN_ISA_NAME, and includes
 * this file once. */
#include "common.h"
#include "walk.h"
#include "simd.h"
#include "dtypes.h"

/* one block per row of SCAN_DTYPES: its suffix and its NumPy kind */
#define SFX b1
#define KIND 'b'
#include "instantiate.h"
#define SFX i8
#define KIND 'i'
#include "instantiate.h"
#define SFX i16
#define KIND 'i'
#include "instantiate.h"
#define SFX i32
#define KIND 'i'
#include "instantiate.h"
#define SFX i64
#define KIND 'i'
#include "instantiate.h"
#define SFX u8
#define KIND 'u'
#include "instantiate.h"
#define SFX u16
#define KIND 'u'
#include "instantiate.h"
#define SFX u32
#define KIND 'u'
#include "instantiate.h"
#define SFX u64
#define KIND 'u'
#include "instantiate.h"
#define SFX f16
#define KIND 'f'
#include "instantiate.h"
#define SFX f32
#define KIND 'f'
#include "instantiate.h"
#define SFX f64
#define KIND 'f'
#include "instantiate.h"
#define SFX c64
#define KIND 'c'
#include "instantiate.h"
#define SFX c128
#define KIND 'c'
#include "instantiate.h"

/* the table: ops x dtypes, each entry the op's cells for the dtype */
#define CELLS_OF_DTYPE_(E, sfx, npy, name, kind, size, prefix) [DT_##E] = prefix##_cells_##sfx,
#define CELLS_OF_OP_(E, prefix, name, rule, identity, shape, a) [SCAN_##E] = {SCAN_DTYPES(CELLS_OF_DTYPE_, prefix)},

#define LINEAR_CELLS_(E, sfx, npy, name, kind, size, a) [DT_##E] = linear_cells_##sfx,

const scan_table SCAN_TABLE_NAME = {
    .isa = SCAN_ISA_NAME,
    .cells = {SCAN_OPS(CELLS_OF_OP_, )},
    .linear = {SCAN_DTYPES(LINEAR_CELLS_, )},
};
