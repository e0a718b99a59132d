"""The prompt list and SAT's vocabulary as the prompt box uses them (no Qt; the vocabulary loads on first use)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PromptList:
    """Prompts in order without duplicates; `freeText` are the ones SAT does not know, added after a warning."""

    prompts: tuple[str, ...] = ()
    freeText: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, prompts, freeText=()) -> PromptList:
        kept = tuple(dict.fromkeys(prompts))
        return cls(kept, tuple(p for p in dict.fromkeys(freeText) if p in kept))

    def adding(self, prompts, freeText=()) -> PromptList:
        return PromptList.of([*self.prompts, *prompts], [*self.freeText, *freeText])

    def removing(self, prompts) -> PromptList:
        gone = set(prompts)
        return PromptList.of([p for p in self.prompts if p not in gone], self.freeText)


class Vocabulary:
    """Completion, resolution and presets from `SATSegmentLib.vocabulary`."""

    @staticmethod
    def suggestions(text: str, modality: str, limit: int = 15) -> list:
        """`vocabulary.Suggestion`s for what was typed (none for blank text)."""
        from SATSegmentLib import vocabulary

        return vocabulary.complete(text, modality=modality, limit=limit) if text.strip() else []

    @staticmethod
    def resolve(text: str, modality: str) -> tuple[str | None, list[str]]:
        """(SAT term, []) when SAT knows the text, else (None, the closest terms)."""
        from SATSegmentLib import errors, vocabulary

        try:
            return vocabulary.resolve(text, modality), []
        except errors.UnknownPromptError as exc:
            return None, list(exc.suggestions)

    @staticmethod
    def resolveList(text: str, modality: str) -> tuple[list[str], dict[str, list[str]]]:
        """A pasted structure list (TG-263 or English; comma, semicolon, newline or a planning system's CSV):
        (the SAT terms of the entries SAT knows, in order; unresolved entry -> the closest terms)."""
        from SATSegmentLib.prompts import parse_structure_list, resolve_entries

        resolution = resolve_entries(parse_structure_list(text), modality)
        unresolved = {entry: list(error.suggestions) for entry, error in resolution.unresolved.items()}
        return list(dict.fromkeys(resolution.terms.values())), unresolved

    @staticmethod
    def presets() -> dict[str, list[str]]:
        from SATSegmentLib import vocabulary

        return vocabulary.presets()
