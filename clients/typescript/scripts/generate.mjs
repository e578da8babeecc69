// `npm run generate`: TypeScript from ../../proto (and google/rpc/{status,error_details}.proto)
// with protobuf-ts, run by buf. Works offline once `npm ci` has run:
//
//   buf       $BUF, else the `buf` beside the Python that runs the tests (buf-bin is in
//             pricegrid's test extra), else `buf` on PATH
//   google/rpc/*.proto   from googleapis-common-protos, installed with pricegrid (grpcio-status
//             depends on it): the same package the Python client decodes the rich errors with
//   Python    $PYTHON, else ../../.venv/bin/python, else python3
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repo = resolve(here, "..", "..");

function python() {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = join(repo, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

const py = python();
const found = JSON.parse(
  execFileSync(
    py,
    [
      "-c",
      [
        "import importlib.util, json, pathlib, sysconfig",
        "spec = importlib.util.find_spec('google.rpc.status_pb2')",
        "rpc = str(pathlib.Path(spec.origin).parent) if spec and spec.origin else ''",
        "print(json.dumps({'rpc': rpc, 'scripts': sysconfig.get_path('scripts')}))",
      ].join("\n"),
    ],
    { encoding: "utf8" },
  ),
);
if (!found.rpc) {
  throw new Error(`${py} has no googleapis-common-protos (google.rpc): pip install pricegrid first, or set PYTHON`);
}

// Only the two files the errors need, staged under their import path (google/rpc/...).
const staged = join(here, "build", "proto", "google", "rpc");
rmSync(join(here, "build", "proto"), { recursive: true, force: true });
mkdirSync(staged, { recursive: true });
for (const name of ["status.proto", "error_details.proto"]) {
  const source = join(found.rpc, name);
  if (!existsSync(source)) throw new Error(`${source} is missing (googleapis-common-protos ships the .proto files)`);
  copyFileSync(source, join(staged, name));
}

const beside = join(found.scripts, "buf");
const buf = process.env.BUF || (existsSync(beside) ? beside : "buf");
const env = { ...process.env, PATH: [join(here, "node_modules", ".bin"), process.env.PATH].join(delimiter) };
execFileSync(buf, ["generate", "--template", "buf.gen.yaml"], { cwd: here, env, stdio: "inherit" });
