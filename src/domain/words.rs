//! Enums written as fixed words: in SQL rows, JSON and metric labels a delivery state, an event
//! status, a dead reason or an outcome is one lowercase word. `words!` gives each such enum its
//! word (`as_str`), its list (`ALL`), parsing (`FromStr`), `Display` and serde, all from one
//! table, so the word and the variant cannot drift apart. `UnknownWord` is the error for a
//! word that names none of the variants.

use std::fmt;

/// A word that is not one of an enum's words (a corrupt row, a wrong query parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    /// What was expected, e.g. "delivery state".
    pub expected: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.expected, self.word)
    }
}

impl std::error::Error for UnknownWord {}

/// Declares an enum of words: `words! { /// doc  pub enum Name("what it is") { Variant => "word", … } }`.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($expected:literal) {
            $( $(#[$variant_meta:meta])* $variant:ident => $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored in SQL, written in JSON and used as a metric label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::words::UnknownWord;

            fn from_str(word: &str) -> Result<Self, Self::Err> {
                match word {
                    $( $word => Ok($name::$variant), )+
                    _ => Err($crate::domain::words::UnknownWord {
                        expected: $expected,
                        word: word.to_owned(),
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let word = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                word.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use words;

#[cfg(test)]
mod tests {
    words! {
        /// A test enum.
        pub enum Colour("colour") {
            Red => "red",
            DarkBlue => "dark_blue",
        }
    }

    #[test]
    fn words_round_trip_through_text_and_serde() {
        for colour in Colour::ALL {
            assert_eq!(colour.as_str().parse::<Colour>(), Ok(*colour));
            let json = serde_json::to_string(colour).expect("serialise");
            assert_eq!(json, format!("\"{}\"", colour.as_str()));
            assert_eq!(
                serde_json::from_str::<Colour>(&json).expect("deserialise"),
                *colour
            );
        }
        assert_eq!(Colour::DarkBlue.to_string(), "dark_blue");
        let unknown = "DarkBlue".parse::<Colour>().expect_err("not a word");
        assert_eq!(unknown.to_string(), "unknown colour \"DarkBlue\"");
        assert!(serde_json::from_str::<Colour>("\"green\"").is_err());
    }
}
