#!/usr/bin/env bash
# Regenerate the Python gRPC code in execdist/grpc/ from schemas/execdist.proto.
# The generated files are checked in; run this after changing the .proto.
# Needs grpcio-tools (pip install grpcio-tools); PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=execdist/grpc

"$PYTHON" -m grpc_tools.protoc \
  --proto_path=schemas \
  --python_out="$OUT" \
  --pyi_out="$OUT" \
  --grpc_python_out="$OUT" \
  schemas/execdist.proto

# protoc writes `import execdist_pb2`, which only works with execdist/grpc on sys.path:
# make it package-relative.
sed -i.bak -E 's/^import execdist_pb2 as /from . import execdist_pb2 as /' "$OUT/execdist_pb2_grpc.py"
rm -f "$OUT/execdist_pb2_grpc.py.bak"

# generated code is not held to the project's lint and type rules
for file in "$OUT/execdist_pb2.py" "$OUT/execdist_pb2.pyi" "$OUT/execdist_pb2_grpc.py"; do
  if ! head -n 1 "$file" | grep -q '^# ruff: noqa'; then
    { printf '# ruff: noqa\n# mypy: ignore-errors\n'; cat "$file"; } >"$file.tmp"
    mv "$file.tmp" "$file"
  fi
done
echo "[gen_grpc] regenerated $OUT/execdist_pb2.py, execdist_pb2.pyi, execdist_pb2_grpc.py"
