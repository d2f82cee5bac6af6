echo "[fixtures] none yet"
