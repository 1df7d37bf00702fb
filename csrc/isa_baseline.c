/* The portable kernels: whatever the compiler's default target allows
 * (SSE2 on x86-64, NEON on aarch64).  Always present; SCANAD_FORCE_BASELINE
 * selects it. */
/* no SCAN_HAVE_*: the kernels use only what every CPU of the target has */
#define SCAN_ISA_BASELINE 1
#define SCAN_TABLE_NAME scan_table_baseline
#define SCAN_ISA_NAME "baseline"
#include "kernels/table.h"
