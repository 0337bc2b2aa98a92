"""Old home of :class:`Cameras`, kept until every import reads ``lagernvs.cameras``."""

from lagernvs.cameras.batch import Cameras

__all__ = ["Cameras"]
