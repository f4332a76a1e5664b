"""Built-in data sources, one plugin module each.

==========  ===================  =================================================
source      module               reads
==========  ===================  =================================================
``folder``  :mod:`.folder`       one sub-folder of images per class
``csv``     :mod:`.csv_list`     a CSV image list with ``path`` and ``label`` columns
``arrays``  :mod:`.arrays`       ``.npz`` files holding ``x`` (uint8 NHWC) and ``y``
==========  ===================  =================================================

The two image sources share :mod:`.images` (decoding one file with Pillow) and
:mod:`.scan` (decoding every file once before training, and the report of what was
skipped and why). See docs/data.md.
"""
