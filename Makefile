# Thin wrapper over CMake and the project scripts. The two Quick start commands:
#   make run    install what is missing, build, start the whole stack on an embedded PostgreSQL
#   make test   install what is missing, build with ASan+UBSan, run every test on a throwaway PostgreSQL
.PHONY: run test build build-test fuzz clean

run:
	@scripts/run.sh

test:
	@scripts/test.sh

build:
	@scripts/deps.sh
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$$(nproc)

build-test:
	@scripts/deps.sh
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DCALSETA_SANITIZE=ON >/dev/null
	cmake --build build-test -j$$(nproc)

fuzz:
	@scripts/fuzz.sh

clean:
	rm -rf build build-test build-fuzz
