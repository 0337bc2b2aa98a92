"""COLMAP sparse models (binary ``*.bin`` and text ``*.txt``): cameras, images, 3D points.

Values are kept exactly as stored (float64). Poses are COLMAP's world-to-camera (qvec = w, x, y,
z; tvec) in OpenCV axes. Only parsing lives here; `colmap.py` turns a model into a `Scene`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CAMERA_MODELS",
    "ColmapCamera",
    "ColmapImage",
    "ColmapModel",
    "ColmapPoints",
    "find_model_files",
    "read_colmap_model",
    "write_colmap_text",
]

CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
"""COLMAP model id -> (name, number of parameters)."""
_PARAM_COUNT = {name: count for name, count in CAMERA_MODELS.values()}


@dataclass(frozen=True)
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64, model-specific order


@dataclass(frozen=True)
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # (4,) float64, w x y z, world-to-camera rotation
    tvec: np.ndarray  # (3,) float64, world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray  # (K, 2) float64 keypoint positions in pixels
    point3d_ids: np.ndarray  # (K,) int64, -1 where the keypoint has no 3D point


@dataclass(frozen=True)
class ColmapPoints:
    ids: np.ndarray  # (P,) int64
    xyz: np.ndarray  # (P, 3) float64
    rgb: np.ndarray  # (P, 3) uint8
    error: np.ndarray  # (P,) float64 mean reprojection error
    track_offsets: np.ndarray  # (P + 1,) int64: track of point p is track[off[p]:off[p + 1]]
    track: np.ndarray  # (T, 2) int64 (image_id, point2D index)


@dataclass(frozen=True)
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints | None


def find_model_files(model_dir: Path) -> tuple[str, dict[str, Path]]:
    """("bin" | "txt", {cameras, images, points3D} paths) of the model in ``model_dir``."""
    model_dir = Path(model_dir)
    for ext in ("bin", "txt"):
        files = {n: model_dir / f"{n}.{ext}" for n in ("cameras", "images", "points3D")}
        if files["cameras"].is_file() or files["images"].is_file():
            missing = [str(p) for n, p in files.items() if n != "points3D" and not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"incomplete COLMAP model in {model_dir}: missing {', '.join(missing)}; "
                    "export the full model (colmap model_converter)"
                )
            return ext, files
    raise FileNotFoundError(
        f"no COLMAP model in {model_dir}: expected cameras.bin/images.bin or cameras.txt/"
        "images.txt (usually in <scene>/sparse/0)"
    )


def read_colmap_model(model_dir: str | Path, read_points: bool = True) -> ColmapModel:
    """Read a COLMAP model directory (binary preferred when both exist)."""
    ext, files = find_model_files(Path(model_dir))
    if ext == "bin":
        cameras = _read_cameras_bin(files["cameras"])
        images = _read_images_bin(files["images"])
        points = _read_points_bin(files["points3D"]) if read_points else None
    else:
        cameras = _read_cameras_txt(files["cameras"])
        images = _read_images_txt(files["images"])
        points = _read_points_txt(files["points3D"]) if read_points else None
    if read_points and points is None:
        raise FileNotFoundError(f"COLMAP model in {model_dir} has no points3D.{ext}")
    return ColmapModel(cameras=cameras, images=images, points=points)


class _Reader:
    """Sequential little-endian reader over a bytes buffer with truncation checks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"COLMAP file {self.path} is truncated; re-export the model")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise ValueError(f"COLMAP file {self.path} is truncated; re-export the model")
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return values

    def string(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(f"COLMAP file {self.path} is truncated; re-export the model")
        text = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return text


def _model_name(model_id: int, path: Path) -> tuple[str, int]:
    if model_id not in CAMERA_MODELS:
        raise ValueError(f"unknown COLMAP camera model id {model_id} in {path}")
    return CAMERA_MODELS[model_id]


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    reader = _Reader(path)
    (count,) = reader.take("<Q")
    cameras = {}
    for _ in range(count):
        camera_id, model_id, width, height = reader.take("<iiQQ")
        name, num_params = _model_name(model_id, path)
        params = reader.array(np.dtype("<f8"), num_params).astype(np.float64)
        cameras[camera_id] = ColmapCamera(camera_id, name, int(width), int(height), params)
    return cameras


_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    reader = _Reader(path)
    (count,) = reader.take("<Q")
    images = {}
    for _ in range(count):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.take("<i7di")
        name = reader.string()
        (num_points,) = reader.take("<Q")
        points = reader.array(_POINT2D, num_points)
        images[image_id] = ColmapImage(
            image_id=image_id,
            qvec=np.array([qw, qx, qy, qz], dtype=np.float64),
            tvec=np.array([tx, ty, tz], dtype=np.float64),
            camera_id=camera_id,
            name=name,
            xys=np.stack([points["x"], points["y"]], axis=-1).astype(np.float64),
            point3d_ids=points["id"].astype(np.int64),
        )
    return images


def _read_points_bin(path: Path) -> ColmapPoints | None:
    if not path.is_file():
        return None
    reader = _Reader(path)
    (count,) = reader.take("<Q")
    ids = np.empty(count, np.int64)
    xyz = np.empty((count, 3), np.float64)
    rgb = np.empty((count, 3), np.uint8)
    error = np.empty(count, np.float64)
    offsets = np.zeros(count + 1, np.int64)
    tracks = []
    for i in range(count):
        pid, x, y, z, r, g, b, err, length = reader.take("<Q3d3BdQ")
        ids[i], xyz[i], rgb[i], error[i] = pid, (x, y, z), (r, g, b), err
        tracks.append(reader.array(np.dtype("<i4"), 2 * length))
        offsets[i + 1] = offsets[i] + length
    track = np.concatenate(tracks).reshape(-1, 2) if tracks else np.zeros((0, 2))
    return ColmapPoints(ids, xyz, rgb, error, offsets, track.astype(np.int64))


def _text_lines(path: Path) -> list[str]:
    """Lines of a COLMAP text file without comments (empty lines kept: they are data)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def _parse_error(path: Path, number: int, line: str, error: Exception) -> ValueError:
    return ValueError(f"cannot parse {path} entry {number} ({line[:80]!r}): {error}")


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in enumerate(_text_lines(path)):
        if not line.strip():
            continue
        tokens = line.split()
        try:
            model = tokens[1]
            if model not in _PARAM_COUNT:
                raise ValueError(f"unknown camera model {model}")
            params = np.array([float(v) for v in tokens[4:]], dtype=np.float64)
            if len(params) != _PARAM_COUNT[model]:
                raise ValueError(f"{model} needs {_PARAM_COUNT[model]} parameters")
            camera = ColmapCamera(int(tokens[0]), model, int(tokens[2]), int(tokens[3]), params)
        except (IndexError, ValueError) as error:
            raise _parse_error(path, number, line, error) from error
        cameras[camera.camera_id] = camera
    return cameras


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    lines = _text_lines(path)
    images = {}
    i = 0
    entry = 0
    while i < len(lines):
        header = lines[i]
        if not header.strip():
            i += 1
            continue
        observations = lines[i + 1] if i + 1 < len(lines) else ""
        i += 2
        entry += 1
        tokens = header.split()
        try:
            values = [float(v) for v in tokens[1:8]]
            points = np.array([float(v) for v in observations.split()], dtype=np.float64)
            if len(tokens) < 10 or len(values) != 7 or points.size % 3:
                raise ValueError("expected 'ID QW QX QY QZ TX TY TZ CAMERA_ID NAME' + 'X Y ID'*")
            points = points.reshape(-1, 3)
            image = ColmapImage(
                image_id=int(tokens[0]),
                qvec=np.array(values[:4], dtype=np.float64),
                tvec=np.array(values[4:], dtype=np.float64),
                camera_id=int(tokens[8]),
                name=" ".join(tokens[9:]),
                xys=points[:, :2].copy(),
                point3d_ids=points[:, 2].astype(np.int64),
            )
        except ValueError as error:
            raise _parse_error(path, entry, header, error) from error
        images[image.image_id] = image
    return images


def _read_points_txt(path: Path) -> ColmapPoints | None:
    if not path.is_file():
        return None
    rows = [line.split() for line in _text_lines(path) if line.strip()]
    count = len(rows)
    ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
    xyz = np.array([[float(v) for v in r[1:4]] for r in rows], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([[int(v) for v in r[4:7]] for r in rows], dtype=np.uint8).reshape(-1, 3)
    error = np.array([float(r[7]) for r in rows], dtype=np.float64)
    tracks = [np.array(r[8:], dtype=np.int64).reshape(-1, 2) for r in rows]
    offsets = np.zeros(count + 1, np.int64)
    offsets[1:] = np.cumsum([len(t) for t in tracks])
    track = np.concatenate(tracks) if tracks else np.zeros((0, 2), np.int64)
    return ColmapPoints(ids, xyz, rgb, error, offsets, track)


def write_colmap_text(model: ColmapModel, model_dir: str | Path) -> None:
    """Write ``model`` as COLMAP text files (cameras.txt, images.txt, points3D.txt).

    Floats are written with ``repr`` so the text model reads back bit-identical.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for cam in model.cameras.values():
        params = " ".join(repr(float(v)) for v in cam.params)
        lines.append(f"{cam.camera_id} {cam.model} {cam.width} {cam.height} {params}")
    (model_dir / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "# POINTS2D[] as (X, Y, ID)",
    ]
    for img in model.images.values():
        pose = " ".join(repr(float(v)) for v in (*img.qvec, *img.tvec))
        lines.append(f"{img.image_id} {pose} {img.camera_id} {img.name}")
        lines.append(
            " ".join(
                f"{float(x)!r} {float(y)!r} {int(pid)}"
                for (x, y), pid in zip(img.xys, img.point3d_ids, strict=True)
            )
        )
    (model_dir / "images.txt").write_text("\n".join(lines) + "\n")
    if model.points is None:
        return
    pts = model.points
    lines = ["# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for p in range(len(pts.ids)):
        track = pts.track[pts.track_offsets[p] : pts.track_offsets[p + 1]].reshape(-1)
        xyz = " ".join(repr(float(v)) for v in pts.xyz[p])
        rgb = " ".join(str(int(v)) for v in pts.rgb[p])
        lines.append(
            f"{pts.ids[p]} {xyz} {rgb} {float(pts.error[p])!r} "
            + " ".join(str(int(v)) for v in track)
        )
    (model_dir / "points3D.txt").write_text("\n".join(lines) + "\n")
