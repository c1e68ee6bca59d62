#!/usr/bin/env python3
"""OpenCV reference embeddings for the parity test in tests/vision.rs.

Runs OpenCV's own YuNet + SFace implementation (cv2.FaceDetectorYN, cv2.FaceRecognizerSF
alignCrop + feature) on a few fixtures, with the same 640x640 letterbox blindface uses
(scale to fit, pad right/bottom with zeros), and prints JSON with each image's largest
face (box, landmarks, score, in image pixels) and its L2-normalised embedding.

Usage (outside the repository, so nothing pip-installed lands in it):
    python3 -m venv /tmp/cvenv && /tmp/cvenv/bin/pip install opencv-python-headless numpy
    /tmp/cvenv/bin/python scripts/opencv_reference.py > tests/fixtures/opencv_reference.json
"""

import json
import math
import pathlib
import sys

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
FACES = ROOT / "tests" / "fixtures" / "faces"
IMAGES = sys.argv[1:] or ["obama.jpg", "biden.jpg"]
SIZE = 640


def round_half_up(x):
    # Rust's f64::round (half away from zero) for positive values.
    return int(math.floor(x + 0.5))


def main():
    detector = cv2.FaceDetectorYN.create(
        str(MODELS / "face_detection_yunet_2023mar.onnx"), "", (SIZE, SIZE), 0.9, 0.3, 5000
    )
    recognizer = cv2.FaceRecognizerSF.create(
        str(MODELS / "face_recognition_sface_2021dec.onnx"), ""
    )
    out = {
        "generator": "scripts/opencv_reference.py",
        "opencv_version": cv2.__version__,
        "letterbox": "scale to fit 640x640 (cv2.INTER_LINEAR), pad right/bottom with zeros",
        "images": {},
    }
    for name in IMAGES:
        img = cv2.imread(str(FACES / name), cv2.IMREAD_COLOR)  # BGR, EXIF orientation applied
        if img is None:
            sys.exit(f"cannot read {name}")
        h, w = img.shape[:2]
        scale = min(SIZE / w, SIZE / h)
        nw, nh = round_half_up(w * scale), round_half_up(h * scale)
        canvas = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        _, faces = detector.detect(canvas)
        if faces is None or len(faces) == 0:
            sys.exit(f"no face in {name}")
        face = max(faces, key=lambda f: f[2] * f[3]).astype(np.float64)
        fx, fy = w / nw, h / nh
        face[[0, 2, 4, 6, 8, 10, 12]] *= fx
        face[[1, 3, 5, 7, 9, 11, 13]] *= fy
        aligned = recognizer.alignCrop(img, face.astype(np.float32))
        feature = recognizer.feature(aligned).reshape(-1).astype(np.float64)
        feature /= np.linalg.norm(feature)
        out["images"][name] = {
            "width": w,
            "height": h,
            "faces_found": len(faces),
            "score": float(face[14]),
            "box": [float(v) for v in face[0:4]],
            "landmarks": [[float(face[4 + 2 * i]), float(face[5 + 2 * i])] for i in range(5)],
            "embedding": [round(float(v), 7) for v in feature],
        }
    names = list(out["images"])
    if len(names) >= 2:
        a = np.array(out["images"][names[0]]["embedding"])
        b = np.array(out["images"][names[1]]["embedding"])
        out["pair"] = {
            "a": names[0],
            "b": names[1],
            "cosine": float(a @ b),
            "l2": float(np.linalg.norm(a - b)),
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
