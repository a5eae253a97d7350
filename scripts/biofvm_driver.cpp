// Time BioFVM's 2D diffusion-decay solver on a given problem (scripts/bench_biofvm.py builds it).
//
// BioFVM (Ghaffarizadeh, Friedman & Macklin, Bioinformatics 32:1256, 2016) solves
//   du_s/dt = D_s lap(u_s) - lambda_s u_s
// with zero-flux faces by locally one-dimensional (LOD) implicit Euler sweeps, one Thomas
// solve per grid line and axis (diffusion_decay_solver__constant_coefficients_LOD_2D).
//
// Usage:
//   biofvm_driver N DX S DT_MIN STEPS THREADS PARAMS INIT OUT
//     N        cells per axis (N x N voxels, one z layer)
//     DX       voxel edge (um)
//     S        substrates
//     DT_MIN   time step (min)
//     STEPS    number of steps
//     THREADS  OpenMP threads
//     PARAMS   text file: S lines "D_um2_per_min decay_per_min"
//     INIT     float64 binary, shape (S, N, N) C order, [s][y][x]
//     OUT      float64 binary written at the end, same layout
// Prints one line: "first_step_s=... steps_s=... ms_per_step=..." (steps_s: steps 2..STEPS).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>
#include <omp.h>

#include "BioFVM.h"

using namespace BioFVM;

int main(int argc, char* argv[])
{
	if (argc != 10) {
		std::fprintf(stderr, "usage: %s N DX S DT_MIN STEPS THREADS PARAMS INIT OUT\n", argv[0]);
		return 2;
	}
	const int n = std::atoi(argv[1]);
	const double dx = std::atof(argv[2]);
	const int S = std::atoi(argv[3]);
	const double dt = std::atof(argv[4]);
	const int steps = std::atoi(argv[5]);
	const int threads = std::atoi(argv[6]);
	omp_set_num_threads(threads);

	std::vector<double> D(S), decay(S);
	{
		std::ifstream p(argv[7]);
		for (int s = 0; s < S; s++) {
			if (!(p >> D[s] >> decay[s])) {
				std::fprintf(stderr, "%s: need %d lines 'D decay'\n", argv[7], S);
				return 2;
			}
		}
	}

	Microenvironment M;
	M.set_density(0, "s0", "dimensionless");
	for (int s = 1; s < S; s++) M.add_density("s" + std::to_string(s), "dimensionless");
	for (int s = 0; s < S; s++) {
		M.diffusion_coefficients[s] = D[s];
		M.decay_rates[s] = decay[s];
	}
	// One z layer: z from -dx/2 to dx/2; x and y from 0 to n*dx (cell centres at (i + 1/2) dx).
	M.resize_space(0.0, n * dx, 0.0, n * dx, -0.5 * dx, 0.5 * dx, dx, dx, dx);
	if ((int)M.mesh.x_coordinates.size() != n || (int)M.mesh.y_coordinates.size() != n ||
	    (int)M.mesh.z_coordinates.size() != 1 || !M.mesh.uniform_mesh) {
		std::fprintf(stderr, "mesh is %zu x %zu x %zu, wanted %d x %d x 1 uniform\n",
		             M.mesh.x_coordinates.size(), M.mesh.y_coordinates.size(),
		             M.mesh.z_coordinates.size(), n, n);
		return 1;
	}
	M.diffusion_decay_solver = diffusion_decay_solver__constant_coefficients_LOD_2D;

	const size_t cells = (size_t)n * n;
	{
		std::vector<double> init(cells * S);
		std::FILE* f = std::fopen(argv[8], "rb");
		if (!f || std::fread(init.data(), sizeof(double), init.size(), f) != init.size()) {
			std::fprintf(stderr, "%s: need %zu float64 values\n", argv[8], init.size());
			return 2;
		}
		std::fclose(f);
		for (int j = 0; j < n; j++)
			for (int i = 0; i < n; i++) {
				std::vector<double>& v = M.density_vector(M.mesh.voxel_index(i, j, 0));
				for (int s = 0; s < S; s++) v[s] = init[s * cells + (size_t)j * n + i];
			}
	}

	// The first step also factorises the tridiagonal systems (setup), timed apart.
	double t0 = omp_get_wtime();
	if (steps > 0) M.simulate_diffusion_decay(dt);
	double t1 = omp_get_wtime();
	for (int k = 1; k < steps; k++) M.simulate_diffusion_decay(dt);
	double t2 = omp_get_wtime();

	{
		std::vector<double> out(cells * S);
		for (int j = 0; j < n; j++)
			for (int i = 0; i < n; i++) {
				std::vector<double>& v = M.density_vector(M.mesh.voxel_index(i, j, 0));
				for (int s = 0; s < S; s++) out[s * cells + (size_t)j * n + i] = v[s];
			}
		std::FILE* f = std::fopen(argv[9], "wb");
		if (!f || std::fwrite(out.data(), sizeof(double), out.size(), f) != out.size()) {
			std::fprintf(stderr, "%s: cannot write\n", argv[9]);
			return 1;
		}
		std::fclose(f);
	}
	std::printf("first_step_s=%.6f steps_s=%.6f ms_per_step=%.4f\n", t1 - t0, t2 - t1,
	            steps > 1 ? 1e3 * (t2 - t1) / (steps - 1) : 1e3 * (t1 - t0));
	return 0;
}
