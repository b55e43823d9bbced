"""The classroom: the labs' size on a seat, a seat's setup check, each learner's progress, a class's grades.

- :mod:`~gpuviz.classroom.seat`: how many ranks the labs' jobs run on (``GPUVIZ_LAB_RANKS``);
- :mod:`~gpuviz.classroom.doctor`: ``gpuviz doctor``, is this seat ready for the labs?
- :mod:`~gpuviz.classroom.progress`: every exercise check recorded in the learner's folder;
- :mod:`~gpuviz.classroom.grade`: a class's progress files in one table.
"""
