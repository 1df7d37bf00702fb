/* The portable kernels: whatever the compiler's default target allows
 * (SSE2 on x86-64, NEON on aarch64).  Always present; SCANAD_FORCE_BASELINE
 * selects it. */
#define SCAN_TABLE_NAME scan_table_baseline
#define SCAN_ISA_NAME "baseline"
#include "kernels/table.h"
