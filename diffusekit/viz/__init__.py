"""Pictures: image grids, process strips and GIFs (`grids`), waveforms, spectrograms and clips (`signals`), and the
forward and reverse process of a trained model (`show`). Pillow only, no matplotlib; the shared drawing primitives
(font, captions, saving) are in `draw`."""

from .grids import image_grid, process_strip, save_gif, save_grid, save_strip, to_uint8
from .signals import (save_clip_gif, save_clip_strip, save_samples, save_spectrograms, save_waveforms, spectrogram_db,
                      spectrogram_grid, waveform_grid)

__all__ = ["image_grid", "process_strip", "save_gif", "save_grid", "save_strip", "to_uint8", "save_clip_gif",
           "save_clip_strip", "save_samples", "save_spectrograms", "save_waveforms", "spectrogram_db", "spectrogram_grid",
           "waveform_grid"]
