/* Hand-written forward-Euler 5-point stencil: the reference for tmepde's explicit step.
 *
 * S fields on an N x N cell-centred grid, float32, zero-flux faces (a boundary cell's missing
 * neighbour is the cell itself, so its face flux is zero), diffusion + linear decay:
 *   y'[s,j,i] = y + a_s (y[j-1,i] + y[j+1,i] + y[j,i-1] + y[j,i+1] - 4 y) - b_s y
 * with a_s = dt D_s / h^2 and b_s = dt lambda_s, the same arithmetic as tmepde's euler step.
 * Two buffers swapped each step; OpenMP over (field, row); the interior of a row vectorises.
 *
 * Build: gcc -O3 -fopenmp -march=native -o stencil_reference stencil_reference.c
 * Usage: stencil_reference N S STEPS THREADS COEFFS INIT OUT
 *   COEFFS  text file, S lines "a_s b_s"
 *   INIT    float32 binary (S, N, N) C order;  OUT: the state after STEPS steps, same layout
 * Prints "ms_per_step=..." (best of the timed repeats of STEPS steps after one warm-up run).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void step(int n, int S, const float *restrict y, float *restrict out, const float *a,
                 const float *b)
{
#pragma omp parallel for collapse(2) schedule(static)
	for (int s = 0; s < S; s++)
		for (int j = 0; j < n; j++) {
			const float as = a[s], bs = b[s];
			const float *r = y + ((size_t)s * n + j) * n;
			const float *up = j > 0 ? r - n : r;
			const float *dn = j < n - 1 ? r + n : r;
			float *o = out + ((size_t)s * n + j) * n;
			o[0] = r[0] + as * (up[0] + dn[0] + r[0] + r[1] - 4.0f * r[0]) - bs * r[0];
#pragma omp simd
			for (int i = 1; i < n - 1; i++)
				o[i] = r[i] + as * (up[i] + dn[i] + r[i - 1] + r[i + 1] - 4.0f * r[i]) - bs * r[i];
			const int e = n - 1;
			o[e] = r[e] + as * (up[e] + dn[e] + r[e - 1] + r[e] - 4.0f * r[e]) - bs * r[e];
		}
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: %s N S STEPS THREADS COEFFS INIT OUT\n", argv[0]);
		return 2;
	}
	const int n = atoi(argv[1]), S = atoi(argv[2]), steps = atoi(argv[3]);
	omp_set_num_threads(atoi(argv[4]));
	float *a = malloc(S * sizeof(float)), *b = malloc(S * sizeof(float));
	FILE *f = fopen(argv[5], "r");
	for (int s = 0; s < S; s++)
		if (!f || fscanf(f, "%f %f", &a[s], &b[s]) != 2) {
			fprintf(stderr, "%s: need %d lines 'a b'\n", argv[5], S);
			return 2;
		}
	fclose(f);
	const size_t total = (size_t)S * n * n;
	float *y0 = malloc(total * sizeof(float));
	float *y = malloc(total * sizeof(float)), *z = malloc(total * sizeof(float));
	f = fopen(argv[6], "rb");
	if (!f || fread(y0, sizeof(float), total, f) != total) {
		fprintf(stderr, "%s: need %zu float32 values\n", argv[6], total);
		return 2;
	}
	fclose(f);
	double best = 1e30;
	for (int rep = 0; rep < 4; rep++) { /* rep 0 warms caches and threads, not timed */
		memcpy(y, y0, total * sizeof(float));
		double t = omp_get_wtime();
		for (int k = 0; k < steps; k++) {
			step(n, S, y, z, a, b);
			float *tmp = y; y = z; z = tmp;
		}
		t = omp_get_wtime() - t;
		if (rep > 0 && t < best) best = t;
	}
	f = fopen(argv[7], "wb");
	if (!f || fwrite(y, sizeof(float), total, f) != total) {
		fprintf(stderr, "%s: cannot write\n", argv[7]);
		return 1;
	}
	fclose(f);
	printf("ms_per_step=%.4f\n", 1e3 * best / steps);
	return 0;
}
