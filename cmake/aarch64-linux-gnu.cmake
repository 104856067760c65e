# Cross-compiling for 64-bit ARM Linux with Debian's cross gcc
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross; scripts/install-deps.sh
# installs them on x86-64 hosts). Programs built for the target run on the
# host through qemu-user, which CTest and try_run use as the emulator.
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DNNC_RUNTIME_ONLY=ON -DNNC_BLAS=OFF -DNNC_SANITIZE=OFF
#
# Libraries and headers are looked for in the target's sysroot alone
# (/usr/aarch64-linux-gnu), programs on the host.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -L: the target's loader and libraries. LD_LIBRARY_PATH: the libraries
# of the sysroot before those of the host's /etc/ld.so.cache, which lists
# libc6:arm64 where a multiarch host has it installed; that libc of another
# build than the sysroot's loader hangs the first pthread_create.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
