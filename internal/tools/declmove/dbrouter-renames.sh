#!/bin/sh
# Renames of issue 15 item 1 that the move list does not do: the functions
# called some form of "failed" get names that say what they do, and the method
# Router.target (which shares its name with the type target) becomes targetOf. Idempotent;
# run from the repository root before declmove (dbrouter.moves uses the new names):
#   sh internal/tools/declmove/dbrouter-renames.sh
set -eu
files=$(ls dbrouter/*.go docs/dbrouter.md internal/tools/declmove/dbrouter.moves)
sed -i -E \
	-e 's/\breaderFailed\b/excludeReader/g' \
	-e 's/\bwriteFailedFinal\b/writerFailedFinal/g' \
	-e 's/\bwriteFailed\b/writerFailed/g' \
	-e 's/\bmonitorFailed\b/monitorError/g' \
	-e 's/\brt\.failed\(/rt.retryOrFail(/g' \
	-e 's/^func \(rt \*Router\) failed\(/func (rt *Router) retryOrFail(/' \
	-e 's/^\/\/ failed handles err of the call/\/\/ retryOrFail handles err of the call/' \
	-e 's/^Router\.failed( +)->/Router.retryOrFail\1->/' \
	-e 's/`exec\.go` `failed`/`exec.go` `retryOrFail`/' \
	-e 's/\brt\.target\(/rt.targetOf(/g' \
	-e 's/^\/\/ target returns where the call runs\./\/\/ targetOf returns where the call runs./' \
	-e 's/^func \(rt \*Router\) target\(/func (rt *Router) targetOf(/' \
	-e 's/^Router\.target( +)->/Router.targetOf\1->/' \
	$files
gofmt -l dbrouter
